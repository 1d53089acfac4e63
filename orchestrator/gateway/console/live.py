"""Live updates of the host page: ``GET /events?view=host`` as server-sent events.

A stream sends the page's fragments when it opens, and again after every host transition the
controller publishes. While the host wakes or stops, its ETA and progress move without a
transition, so the fragments are also sent every ``REFRESH_S``; otherwise the stream costs
nothing but a comment every ``KEEPALIVE_S``. Open streams are kept in the console's WeakSet
and ended on shutdown.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from console.context import CONSOLE
from orchestrator.core.events import Event, Subscription
from orchestrator.gateway.console.views import SOURCE, VIEW, update_message, view_data
from orchestrator.gateway.lifecycle import WAKING, HostState

log = logging.getLogger(__name__)

KEEPALIVE_S = 25.0
REFRESH_S = 2.0
MOVING = WAKING | {HostState.STOPPING}
_CLOSE = "gateway-console.stream-closed"


class HostStream:
    """One open page stream; ``close()`` ends it from outside (shutdown)."""

    def __init__(self, subscription: Subscription) -> None:
        self.subscription = subscription

    def close(self) -> None:
        self.subscription.offer(Event(_CLOSE, {}))


def _message(kind: str, data: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, default=str)}\n\n".encode()


async def _next(subscription: Subscription, wait_s: float) -> list[Event]:
    """The next event and any that came with it; empty after ``wait_s`` with none."""
    try:
        async with asyncio.timeout(wait_s):
            first = await subscription.queue.get()
    except TimeoutError:
        return []
    events = [first]
    while not subscription.queue.empty():
        events.append(subscription.queue.get_nowait())
    return events


async def _update(request: web.Request) -> bytes:
    return _message("update", update_message(request, await view_data(request)))


async def _serve(
    request: web.Request, response: web.StreamResponse, subscription: Subscription
) -> None:
    controller = request.app[SOURCE].controller
    await response.write(b"retry: 2000\n" + await _update(request))
    while True:
        moving = controller.snapshot().state in MOVING
        batch = await _next(subscription, REFRESH_S if moving else KEEPALIVE_S)
        if any(event.type == _CLOSE for event in batch):
            await response.write_eof()
            return
        if batch or moving:
            await response.write(await _update(request))
        else:
            await response.write(b": keep-alive\n\n")


async def events(request: web.Request) -> web.StreamResponse:
    if request.query.get("view", VIEW) != VIEW:
        raise web.HTTPNotFound(text=f"unknown view; this console has one: {VIEW}")
    console = request.app[CONSOLE]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
            "X-Content-Type-Options": "nosniff",
        }
    )
    with request.app[SOURCE].controller.subscribe() as subscription:
        stream = HostStream(subscription)
        console.streams.add(stream)
        await response.prepare(request)
        try:
            await _serve(request, response, subscription)
        except ConnectionError:
            log.debug("live stream closed by the client")
        finally:
            console.streams.discard(stream)
    return response


async def close_streams(app: web.Application) -> None:
    """``on_shutdown``: end every open stream so the server need not wait for them."""
    for stream in list(app[CONSOLE].streams):
        stream.close()


def add_live_routes(app: web.Application) -> None:
    app.router.add_get("/events", events, name="events")
    app.on_shutdown.append(close_streams)
