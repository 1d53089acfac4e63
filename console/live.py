"""Live updates: ``GET /events?view=<page>`` as server-sent events, driven by the event bus.

A stream sends an ``update`` (the page's fragments rendered anew) when it opens, and then only
when the bus publishes something: ``engine.state`` (every load, unload and failure, from the
fleet), ``engine.loading``, ``engine.pin``, ``process.state``, ``hibernation.transition`` and
``audit``. Each bus event is also forwarded as a ``bus`` message. New chart points go to
overview pages as ``history`` messages, without re-rendering anything. With nothing happening
the server does no work for a stream but a comment line every ``KEEPALIVE_S`` (so a vanished
client is noticed). Open streams are kept in a WeakSet and ended on shutdown.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from console.context import CONSOLE, Console
from console.fragments import VIEWS, update_message, view_data
from console.history import Point
from orchestrator.app.runtime import RUNTIME
from orchestrator.core.events import Event, Subscription

log = logging.getLogger(__name__)

KEEPALIVE_S = 25.0
_CLOSE = "console.stream-closed"
_HISTORY = "console.history"
CHART_VIEWS = frozenset({"overview"})


class LiveStream:
    """One open page stream; ``close()`` ends it from outside (shutdown)."""

    def __init__(self, subscription: Subscription, view: str) -> None:
        self.subscription = subscription
        self.view = view

    def close(self) -> None:
        self.subscription.offer(Event(_CLOSE, {}))

    def chart_point(self, point: Point) -> None:
        if self.view in CHART_VIEWS:
            self.subscription.offer(Event(_HISTORY, point.to_dict()))


def push_point(console: Console, point: Point) -> None:
    """A ``History`` listener: hand a new chart point to every open page that draws charts."""
    for stream in list(console.streams):
        if isinstance(stream, LiveStream):
            stream.chart_point(point)


def event_stream_response() -> web.StreamResponse:
    """A server-sent events response that no proxy buffers or caches."""
    return web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
            "X-Content-Type-Options": "nosniff",
        }
    )


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
    response = event_stream_response()
    with runtime.bus.subscribe(maxsize=64) as subscription:
        stream = LiveStream(subscription, view)
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
        batch = await _next(subscription, KEEPALIVE_S)
        if any(event.type == _CLOSE for event in batch):
            await response.write_eof()
            return
        if not batch:
            await response.write(b": keep-alive\n\n")
            continue
        for event in batch:
            if event.type == _HISTORY:
                await response.write(_message("history", event.data))
        changes = [event for event in batch if event.type != _HISTORY]
        for event in changes:
            bus = {"type": event.type, "at": event.at, "data": event.data}
            await response.write(_message("bus", bus))
        if changes:
            data = await view_data(request, view)
            await response.write(_message("update", update_message(request, data)))


async def close_streams(app: web.Application) -> None:
    """``on_shutdown``: end every open stream so the server need not wait for them."""
    for stream in list(app[CONSOLE].streams):
        stream.close()


def add_live_routes(app: web.Application) -> None:
    app.router.add_get("/events", events, name="events")
    app.on_shutdown.append(close_streams)
