"""The gateway's own routes: the host's state for the app, and the gateway's health.

    GET  /v1/host          the host's snapshot (``HostSnapshot.to_json()``)
    GET  /v1/host/events   server-sent events: the snapshot now, then one ``host`` event per
                           transition; a comment every ``HEARTBEAT_S`` keeps proxies from
                           closing a quiet stream; ends when the gateway shuts down
    POST /v1/wake          start the host if it is not up or starting (the app calls it when
                           it comes to the foreground): 202 and the snapshot, however often
    GET  /health/live      the gateway's loop answers (no key: for the VM's health checks)
    GET  /health           the gateway's status and the host's snapshot

None of them is the host's activity: reading the state never keeps the host up.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import suppress
from typing import Any

from aiohttp import web

from orchestrator.core.events import Event, Subscription
from orchestrator.gateway.keys import CLOSING, GATE, HEARTBEAT_S, SOCKETS, STARTED_AT


async def host(request: web.Request) -> web.Response:
    return web.json_response(request.app[GATE].snapshot().to_json())


async def wake(request: web.Request) -> web.Response:
    snapshot = await request.app[GATE].wake("app")
    return web.json_response(snapshot.to_json(), status=202)


async def live(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def health(request: web.Request) -> web.Response:
    app = request.app
    body = {
        "status": "shutting_down" if app[CLOSING].is_set() else "ok",
        "uptime_s": round(time.monotonic() - app[STARTED_AT], 3),
        "sessions": len(app[SOCKETS]),
        "host": app[GATE].snapshot().to_json(),
    }
    return web.json_response(body)


def _sse(data: dict[str, Any]) -> bytes:
    return f"event: host\ndata: {json.dumps(data)}\n\n".encode()


async def host_events(request: web.Request) -> web.StreamResponse:
    gate, closing = request.app[GATE], request.app[CLOSING]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx in front must not hold events back
        }
    )
    with gate.subscribe() as subscription:
        await response.prepare(request)
        try:
            await response.write(_sse(gate.snapshot().to_json()))
            while not closing.is_set():
                event = await _next(subscription, closing, request.app[HEARTBEAT_S])
                if event is not None:
                    await response.write(_sse(event.data))
                elif not closing.is_set():
                    await response.write(b": heartbeat\n\n")
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away
    return response


async def _next(subscription: Subscription, closing: asyncio.Event, wait_s: float) -> Event | None:
    """The next ``host`` event; ``None`` after ``wait_s`` without one, or on shutdown."""
    shutdown = asyncio.ensure_future(closing.wait())
    try:
        async with asyncio.timeout(wait_s):
            while True:
                getting = asyncio.ensure_future(subscription.queue.get())
                try:
                    done, _ = await asyncio.wait(
                        {getting, shutdown}, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    getting.cancel()
                if getting not in done or getting.cancelled():
                    return None
                event = getting.result()
                if event.type == "host":
                    return event
    except TimeoutError:
        return None
    finally:
        shutdown.cancel()
        with suppress(asyncio.CancelledError):
            await shutdown


def add_host_routes(app: web.Application) -> None:
    app.router.add_get("/health/live", live)
    app.router.add_get("/health", health)
    app.router.add_get("/v1/host", host)
    app.router.add_get("/v1/host/events", host_events)
    app.router.add_post("/v1/wake", wake)
