"""The supervisor: every managed engine process of this orchestrator, and its orphans.

One instance per running orchestrator (the runtime owns it). It hands out ``ManagedProcess``
objects by name, stops them all on shutdown, and at start finds the processes an earlier,
crashed orchestrator left behind (through their pidfiles) and stops those that are provably
its own. See ``services.process.managed_process`` for one process's life.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from services.process import pidfiles
from services.process.managed_process import (
    ManagedProcess,
    ProcessFailed,
    ProcessSpec,
    ProcessState,
    ProcessStatus,
    SupervisorError,
)

log = logging.getLogger(__name__)

__all__ = [
    "ManagedProcess",
    "ProcessFailed",
    "ProcessSpec",
    "ProcessState",
    "ProcessStatus",
    "Supervisor",
    "SupervisorError",
]


class Supervisor:
    def __init__(
        self, state_dir: Path | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """``state_dir`` holds the pidfiles; None turns orphan recovery off (tests, tools)."""
        self.pid_dir = state_dir
        self._clock = clock
        self._processes: dict[str, ManagedProcess] = {}
        # Told ``(process name, state)`` on every state change of every process it hands out.
        self.listeners: list[Callable[[str, ProcessState], object]] = []

    def process(self, spec: ProcessSpec) -> ManagedProcess:
        """The process named ``spec.name``, created on first use; a changed spec replaces a
        stopped process and is refused for a running one."""
        existing = self._processes.get(spec.name)
        if existing is not None:
            if existing.spec == spec:
                return existing
            if existing.state not in (ProcessState.STOPPED, ProcessState.FAILED):
                raise ValueError(f"process {spec.name!r} is {existing.state} with another spec")
        created = ManagedProcess(spec, pid_dir=self.pid_dir, clock=self._clock)
        created.listeners.append(lambda state: self._tell(spec.name, state))
        self._processes[spec.name] = created
        return created

    def _tell(self, name: str, state: ProcessState) -> None:
        for listener in list(self.listeners):
            try:
                listener(name, state)
            except Exception:  # a listener's bug must not stop the process's life
                log.exception("process state listener failed")

    def owned_pids(self) -> dict[int, str]:
        """Our children and their descendants by pid (a server's GPU work may run in a
        runner process it spawned, as Ollama's does), for attributing GPU memory."""
        owned: dict[int, str] = {}
        for name, process in self._processes.items():
            pid = process.pid
            if pid is None:
                continue
            owned[pid] = name
            try:
                descendants = psutil.Process(pid).children(recursive=True)
            except psutil.Error:
                continue
            owned.update((child.pid, name) for child in descendants)
        return owned

    def get(self, name: str) -> ManagedProcess | None:
        return self._processes.get(name)

    def serving(self, host: str, port: int) -> ManagedProcess | None:
        """The process handed out for ``host:port``, if any: engines of one server (two
        Ollama models) share it instead of starting a second server on the same port."""
        for process in self._processes.values():
            if (process.spec.host, process.spec.port) == (host, port):
                return process
        return None

    def statuses(self, lines: int = 20) -> list[ProcessStatus]:
        return [process.status(lines) for process in self._processes.values()]

    async def stop_all(self) -> None:
        """Stop every process (in parallel); the orchestrator's exit leaves no child behind."""
        processes = list(self._processes.values())
        results = await asyncio.gather(*(p.stop() for p in processes), return_exceptions=True)
        for process, result in zip(processes, results, strict=True):
            if isinstance(result, BaseException):
                log.error("stopping %s failed", process.spec.name, exc_info=result)

    async def recover_orphans(self, grace_s: float = 10.0) -> list[tuple[str, str]]:
        """Stop processes that an earlier orchestrator started and did not stop.

        A pidfile's process is stopped only when it still is the process recorded (same start
        time and command line) and the orchestrator that started it is gone. Returns
        ``(name, what was done)`` per pidfile handled.
        """
        if self.pid_dir is None or not self.pid_dir.is_dir():
            return []
        done: list[tuple[str, str]] = []
        for path, record in pidfiles.read_all(self.pid_dir):
            if record is None:
                path.unlink(missing_ok=True)
                done.append((path.name, "unreadable pidfile removed"))
                continue
            if pidfiles.owner_alive(record):
                continue  # its orchestrator (maybe this one) still runs and owns it
            outcome = await pidfiles.stop_orphan(record, grace_s)
            path.unlink(missing_ok=True)
            done.append((record.name, outcome))
        return done
