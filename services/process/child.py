"""One child process in its own session and process group, its output read as it arrives.

The pipe protocol never pauses reading, so a chatty child can never block on a full pipe, and
it notices the child's exit even while a grandchild still holds the pipes open (asyncio's own
``Process.wait()`` waits for the pipes too). Signals go to the whole group, never by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from services.process.process_log import LineSplitter

OnLine = Callable[[str, str], None]  # (stream name, line)


class _Pipes(asyncio.SubprocessProtocol):
    def __init__(self, on_line: OnLine) -> None:
        self._on_line = on_line
        self._splitters = {1: LineSplitter(), 2: LineSplitter()}
        self.exited = asyncio.Event()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        for line in self._splitters[fd].feed(data):
            self._on_line("stdout" if fd == 1 else "stderr", line)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd in self._splitters:
            for line in self._splitters[fd].flush():
                self._on_line("stdout" if fd == 1 else "stderr", line)

    def process_exited(self) -> None:
        self.exited.set()


class Child:
    def __init__(self, transport: asyncio.SubprocessTransport, pipes: _Pipes) -> None:
        self._transport = transport
        self._pipes = pipes
        self.pid: int = transport.get_pid()  # also the process group id

    @classmethod
    async def spawn(
        cls,
        command: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path | None,
        on_line: OnLine,
    ) -> Child:
        """Start ``command`` in a new session; OSError when it cannot run at all."""
        loop = asyncio.get_running_loop()
        transport, pipes = await loop.subprocess_exec(
            lambda: _Pipes(on_line),
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **env},
            cwd=cwd,
            start_new_session=True,
        )
        return cls(transport, pipes)

    @property
    def returncode(self) -> int | None:
        return self._transport.get_returncode()

    async def wait(self) -> None:
        await self._pipes.exited.wait()

    def describe_exit(self) -> str:
        code = self.returncode
        if code is not None and code < 0:
            with contextlib.suppress(ValueError):
                return f"signal {signal.Signals(-code).name}"
        return f"code {code}"

    def signal_group(self, sig: signal.Signals) -> bool:
        try:
            os.killpg(self.pid, sig)
            return True
        except ProcessLookupError:
            return False

    async def terminate(self, grace_s: float, on_escalate: Callable[[], None]) -> None:
        """SIGTERM to the group; SIGKILL if the child is still there after ``grace_s``."""
        self.signal_group(signal.SIGTERM)
        try:
            async with asyncio.timeout(grace_s):
                await self.wait()
        except TimeoutError:
            on_escalate()
            self.signal_group(signal.SIGKILL)
            await self.wait()

    def close(self) -> None:
        """SIGKILL whatever is left of the group (stragglers) and release the transport."""
        self.signal_group(signal.SIGKILL)
        self._transport.close()
