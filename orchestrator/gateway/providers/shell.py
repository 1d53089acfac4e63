"""One operator-given shell command, run to its end or killed with everything it started.

The command runs in a session and process group of its own. Its exit is watched apart from its
pipes: ``asyncio``'s ``Process.wait()`` also waits for the pipes to close, so a command that leaves
a background process holding its output would look hung until the timeout. When the command exits
(or overruns ``timeout_s``, or the caller is cancelled) the whole group gets SIGKILL: nothing it
started outlives the call. A command that must leave a daemon running starts it with ``setsid``
and its output redirected, so that it is no longer ours.

Output is kept bounded however much the command writes: its first ``HEAD_BYTES`` (where a status
word is) and its last ``TAIL_BYTES`` (where the reason for a failure is).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass

HEAD_BYTES = 4096
TAIL_BYTES = 16384
DRAIN_S = 2.0
"""After the group is killed, how long the pipes may take to deliver what is left in them; only a
process that left the group (``setsid``) and kept the pipe open makes this wait run out."""


class _Stream:
    """The head and the tail of one pipe's bytes."""

    def __init__(self) -> None:
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = HEAD_BYTES - len(self.head)
        if room > 0:
            self.head += data[:room]
        self.tail += data
        del self.tail[:-TAIL_BYTES]


class _Capture(asyncio.SubprocessProtocol):
    def __init__(self) -> None:
        self.streams: dict[int, _Stream] = {1: _Stream(), 2: _Stream()}
        self.open_pipes = {1, 2}
        self.exited = asyncio.Event()
        self.drained = asyncio.Event()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.streams[fd].feed(data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self.open_pipes.discard(fd)
        if not self.open_pipes:
            self.drained.set()

    def process_exited(self) -> None:
        self.exited.set()


@dataclass(frozen=True)
class CommandResult:
    returncode: int | None  # None when it was killed before it exited
    timed_out: bool
    stdout_head: str
    stdout_tail: str  # with stderr in it when the two were merged
    stderr_tail: str
    truncated: bool  # some output between head and tail was dropped

    def last_lines(self, count: int = 10) -> str:
        """The command's last output lines (stdout, then stderr), for a reason or an error."""
        lines = [*self.stdout_tail.splitlines(), *self.stderr_tail.splitlines()]
        kept = [line.rstrip() for line in lines if line.strip()][-count:]
        return "\n".join(kept) if kept else "(no output)"


async def run_shell(
    command: str,
    *,
    timeout_s: float,
    env: Mapping[str, str],
    merge_stderr: bool = True,
) -> CommandResult:
    """Run ``command`` with ``/bin/sh``, ``env`` added to ours; never raises for its failure."""
    loop = asyncio.get_running_loop()
    transport, capture = await loop.subprocess_shell(
        _Capture,
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
        env={**os.environ, **env},
        start_new_session=True,
    )
    if merge_stderr:
        capture.open_pipes.discard(2)
    pgid = transport.get_pid()
    try:
        exited = await _wait(capture.exited, timeout_s)
        _kill_group(pgid)  # the command on timeout; on exit, whatever it left behind
        await _wait(capture.exited, DRAIN_S)
        await _wait(capture.drained, DRAIN_S)
    finally:
        _kill_group(pgid)  # also when the caller is cancelled
        transport.close()
    out, err = capture.streams[1], capture.streams[2]
    return CommandResult(
        returncode=transport.get_returncode() if exited else None,
        timed_out=not exited,
        stdout_head=out.head.decode(errors="replace"),
        stdout_tail=out.tail.decode(errors="replace"),
        stderr_tail=err.tail.decode(errors="replace"),
        truncated=out.total > TAIL_BYTES or err.total > TAIL_BYTES,
    )


async def _wait(event: asyncio.Event, timeout_s: float) -> bool:
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return False
    return True


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
