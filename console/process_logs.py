"""The output of managed engine processes: the last lines, and ``GET /events/logs`` following them.

The supervisor keeps each process's lines in a ring (``services.process.process_log``); one stream
per open engines page follows every engine's ring at once (one connection, however many
engines: browsers allow six per host), starting with the last ``BACKLOG`` lines. A process the
supervisor creates later is picked up when the bus announces its first ``process.state``. A
quiet process costs nothing: each follower sleeps until its ring has a new line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from aiohttp import web

from console.context import CONSOLE
from console.live import KEEPALIVE_S, event_stream_response
from orchestrator.app.runtime import RUNTIME, Runtime
from orchestrator.core.events import Subscription
from services.process.process_log import LogRing
from services.tasks import TaskSet

log = logging.getLogger(__name__)

BACKLOG = 40
QUEUE = 500  # lines waiting for a slow client; then the rings' followers skip and say so

Item = tuple[str, Any]  # ("line", (engine, LogLine)) | ("process", name) | ("close", None)


def ring_of(runtime: Runtime, name: str) -> LogRing | None:
    """The output ring of engine ``name``'s server process, once the supervisor has one."""
    process = runtime.supervisor.get(name) if runtime.supervisor is not None else None
    return process.log if process is not None else None


def tails(runtime: Runtime, names: list[str], n: int = BACKLOG) -> dict[str, list[dict[str, Any]]]:
    """The last ``n`` lines of each named engine's process (empty before it first starts)."""
    rings = {name: ring_of(runtime, name) for name in names}
    return {
        name: [asdict(line) for line in ring.tail(n)] if ring is not None else []
        for name, ring in rings.items()
    }


class LogStream:
    """One open ``/events/logs`` stream; ``close()`` ends it from outside (shutdown)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Item] = asyncio.Queue(QUEUE)

    def close(self) -> None:
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(("close", None))


async def _follow(name: str, ring: LogRing, queue: asyncio.Queue[Item]) -> None:
    # aclosing: a cancelled follower leaves the ring at once, not when collected
    async with contextlib.aclosing(ring.follow(backlog=BACKLOG)) as lines:
        async for line in lines:
            await queue.put(("line", (name, line)))


async def _processes(events: Subscription, queue: asyncio.Queue[Item]) -> None:
    """Pass on each ``process.state`` event, so a newly created process gets followed."""
    async for event in events:
        if event.type == "process.state":
            await queue.put(("process", str(event.data.get("process", ""))))


async def _items(queue: asyncio.Queue[Item]) -> AsyncIterator[Item | None]:
    """The queue's items, and None after ``KEEPALIVE_S`` with none."""
    while True:
        try:
            async with asyncio.timeout(KEEPALIVE_S):
                yield await queue.get()
        except TimeoutError:
            yield None


async def stream_logs(request: web.Request) -> web.StreamResponse:
    runtime, console = request.app[RUNTIME], request.app[CONSOLE]
    names = runtime.fleet.names
    response = event_stream_response()
    stream = LogStream()
    tasks = TaskSet("console-logs")
    followed: set[str] = set()

    def follow_new() -> None:
        for name in names:
            ring = ring_of(runtime, name)
            if ring is not None and name not in followed:
                followed.add(name)
                tasks.spawn(f"follow-{name}", _follow(name, ring, stream.queue))

    console.streams.add(stream)
    events = runtime.bus.subscribe(maxsize=16)
    tasks.spawn("process-events", _processes(events, stream.queue))
    await response.prepare(request)
    try:
        await response.write(b"retry: 2000\n")
        follow_new()
        async for item in _items(stream.queue):
            if item is None:
                await response.write(b": keep-alive\n\n")
            elif item[0] == "close":
                await response.write_eof()
                break
            elif item[0] == "process":
                follow_new()
            else:
                engine, line = item[1]
                body = json.dumps({"engine": engine, **asdict(line)})
                await response.write(f"event: line\ndata: {body}\n\n".encode())
    except (ConnectionResetError, ConnectionError):
        log.debug("log stream closed by the client")
    finally:
        console.streams.discard(stream)
        events.close()
        await tasks.cancel_all()
    return response


def add_log_routes(app: web.Application) -> None:
    app.router.add_get("/events/logs", stream_logs, name="logs")
