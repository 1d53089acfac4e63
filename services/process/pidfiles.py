"""Pidfiles, so that an orchestrator restarted after a crash finds and stops its own orphans.

One JSON file per managed process: its pid and process group, and what identifies that exact
process (start time and command line, as psutil reports them) plus the orchestrator that
started it. A pid alone proves nothing: after a reboot or a long uptime the number may belong to
a stranger, and a stranger is never signalled. A process whose owner is still alive is not an
orphan either (another orchestrator with the same state directory owns it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

SUFFIX = ".pid.json"
_TOLERANCE_S = 0.05


@dataclass(frozen=True)
class PidRecord:
    name: str
    pid: int
    pgid: int
    create_time: float
    cmdline: list[str]
    owner_pid: int
    owner_create_time: float
    port: int | None = None

    @classmethod
    def for_child(cls, name: str, pid: int, port: int | None) -> PidRecord:
        child = psutil.Process(pid)
        me = psutil.Process()
        return cls(
            name=name,
            pid=pid,
            pgid=os.getpgid(pid),
            create_time=child.create_time(),
            cmdline=child.cmdline(),
            owner_pid=me.pid,
            owner_create_time=me.create_time(),
            port=port,
        )


def path_for(directory: Path, name: str) -> Path:
    return directory / f"{name}{SUFFIX}"


def write(directory: Path, record: PidRecord) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    target = path_for(directory, record.name)
    temporary = target.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(record)))
    temporary.replace(target)


def remove(directory: Path, name: str) -> None:
    path_for(directory, name).unlink(missing_ok=True)


def read_all(directory: Path) -> list[tuple[Path, PidRecord | None]]:
    """Every pidfile in ``directory``; unreadable ones come back as None (to be removed)."""
    found: list[tuple[Path, PidRecord | None]] = []
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        try:
            found.append((path, PidRecord(**json.loads(path.read_text()))))
        except (OSError, ValueError, TypeError):
            found.append((path, None))
    return found


def _same(pid: int, create_time: float, cmdline: list[str] | None) -> psutil.Process | None:
    try:
        process = psutil.Process(pid)
        if abs(process.create_time() - create_time) > _TOLERANCE_S:
            return None
        if cmdline is not None and process.cmdline() != cmdline:
            return None
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def live_child(record: PidRecord) -> psutil.Process | None:
    """The recorded process if it is still exactly the one we started, else None."""
    process = _same(record.pid, record.create_time, record.cmdline)
    if process is None:
        return None
    try:
        if os.getpgid(record.pid) != record.pgid:
            return None
    except ProcessLookupError:
        return None
    return process


def owner_alive(record: PidRecord) -> bool:
    return _same(record.owner_pid, record.owner_create_time, None) is not None


def signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Signal a whole process group; False when nothing is left in it."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False


def gone(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return True


async def wait_gone(process: psutil.Process, timeout_s: float, poll_s: float = 0.05) -> bool:
    """Wait for a process that is not our child (we cannot reap it) to exit, up to a deadline."""
    deadline = time.monotonic() + timeout_s
    while not gone(process):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(poll_s)
    return True


async def stop_orphan(record: PidRecord, grace_s: float) -> str:
    """SIGTERM the orphan's group, wait ``grace_s``, then SIGKILL; returns what was done."""
    process = live_child(record)
    if process is None:
        return "not running (or no longer ours)"
    log.warning(
        "stopping orphan %s (pid %d) left by an earlier orchestrator", record.name, record.pid
    )
    signal_group(record.pgid, signal.SIGTERM)
    if await wait_gone(process, grace_s):
        signal_group(record.pgid, signal.SIGKILL)  # stragglers of the group
        return "terminated"
    signal_group(record.pgid, signal.SIGKILL)
    with contextlib.suppress(psutil.Error):
        await wait_gone(process, 5.0)
    return "killed"
