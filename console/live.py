"""Live updates: ``GET /events?view=<page>`` as server-sent events, driven by the event bus.

A stream sends an ``update`` (the page's fragments rendered anew) when it opens, and then only
when the bus publishes something: transitions, operator actions, pins. Each bus event is
also forwarded as a ``bus`` message. With nothing happening the server does no work for it but
a comment line every ``KEEPALIVE_S`` (so a vanished client is noticed); only while an engine is
loading or unloading does it look again every ``SETTLE_S``, since the fleet does not announce the
end of a load. Open streams are kept in a WeakSet and ended on shutdown.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from console.context import CONSOLE
from console.fragments import VIEWS, update_message, view_data
from console.snapshot import changing
from orchestrator.events import Event, Subscription
from orchestrator.runtime import RUNTIME

log = logging.getLogger(__name__)

KEEPALIVE_S = 25.0
SETTLE_S = 1.0
_CLOSE = "console.stream-closed"


class LiveStream:
    """One open event stream; ``close()`` ends it from outside (shutdown)."""

    def __init__(self, subscription: Subscription) -> None:
        self.subscription = subscription

    def close(self) -> None:
        self.subscription.offer(Event(_CLOSE, {}))


def _message(kind: str, data: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, default=str)}\n\n".encode()


def _drain(subscription: Subscription) -> list[Event]:
    events = []
    while not subscription.queue.empty():
        events.append(subscription.queue.get_nowait())
    return events


async def _next(subscription: Subscription, wait_s: float) -> list[Event]:
    """The next event and any that came with it; empty after ``wait_s`` with none."""
    try:
        async with asyncio.timeout(wait_s):
            first = await subscription.queue.get()
    except TimeoutError:
        return []
    return [first, *_drain(subscription)]


async def events(request: web.Request) -> web.StreamResponse:
    view = request.query.get("view", "overview")
    if view not in VIEWS:
        raise web.HTTPNotFound(text=f"unknown view {view!r}; one of {', '.join(VIEWS)}")
    runtime, console = request.app[RUNTIME], request.app[CONSOLE]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
            "X-Content-Type-Options": "nosniff",
        }
    )
    with runtime.bus.subscribe(maxsize=64) as subscription:
        stream = LiveStream(subscription)
        console.streams.add(stream)
        await response.prepare(request)
        try:
            await _serve(request, response, view, subscription)
        except (ConnectionResetError, ConnectionError):
            log.debug("live stream closed by the client")
        finally:
            console.streams.discard(stream)
    return response


async def _serve(
    request: web.Request, response: web.StreamResponse, view: str, subscription: Subscription
) -> None:
    data = await view_data(request, view)
    await response.write(b"retry: 2000\n" + _message("update", update_message(request, data)))
    while True:
        wait = SETTLE_S if changing(data["snap"]) else KEEPALIVE_S
        batch = await _next(subscription, wait)
        if any(event.type == _CLOSE for event in batch):
            await response.write_eof()
            return
        if not batch and not changing(data["snap"]):
            await response.write(b": keep-alive\n\n")
            continue
        for event in batch:
            bus = {"type": event.type, "at": event.at, "data": event.data}
            await response.write(_message("bus", bus))
        data = await view_data(request, view)
        await response.write(_message("update", update_message(request, data)))


async def close_streams(app: web.Application) -> None:
    """``on_shutdown``: end every open stream so the server need not wait for them."""
    for stream in list(app[CONSOLE].streams):
        stream.close()


def add_live_routes(app: web.Application) -> None:
    app.router.add_get("/events", events, name="events")
    app.on_shutdown.append(close_streams)
