"""A TCP cable between the gateway and the host that a test can cut.

Cutting it is what a host that dies looks like from the gateway: every open connection ends
without an HTTP or WebSocket goodbye (reset, or closed as a killed process's sockets are) and
new connections are refused. The host behind it is the real orchestrator API and stays up.
"""

from __future__ import annotations

import asyncio
import contextlib

from services.tasks import TaskSet


class Cable:
    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks = TaskSet("cable")
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Cable:
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            host_reader, host_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers += [writer, host_writer]
        self._tasks.spawn("out", _pipe(reader, host_writer, writer))
        self._tasks.spawn("back", _pipe(host_reader, writer, host_writer))

    def cut(self, *, reset: bool = True) -> None:
        """Refuse new connections and end the open ones: with a reset, or with a plain close
        (what the kernel does for a killed process)."""
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            if reset:
                writer.transport.abort()
            else:
                writer.transport.close()

    async def close(self) -> None:
        self.cut()
        await self._tasks.cancel_all()
        if self._server is not None:
            await self._server.wait_closed()


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, other: asyncio.StreamWriter
) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    writer.transport.close()
    other.transport.close()
