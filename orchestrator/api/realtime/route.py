"""``GET /v1/realtime``: the WebSocket upgrade, limits, and the connection's whole life.

The route enforces what a connection cannot see from the inside: sessions per API key,
``sessions.max_minutes``, the largest message (an append of ``sessions.max_append_bytes`` or an
``input_image`` of ``api.max_image_bytes``, plus its envelope: over it, an ``error`` event and
close 1009), and shutdown (every open socket is
closed with 1001 by ``on_shutdown``); the first three are shared with ``/v1/duplex``
(``orchestrator.api.limits``). Client messages are handed to ``RealtimeConnection.handle`` one
at a time, in order.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import Counter
from typing import Any

from aiohttp import WSMsgType, web

from orchestrator.api import limits
from orchestrator.api.images import base64_size
from orchestrator.api.keys import DUPLEX_ROUTER, PER_KEY, SOCKETS
from orchestrator.api.realtime.connection import RealtimeConnection
from orchestrator.api.realtime.wire import server_event
from orchestrator.app.runtime import RUNTIME
from services.errors import EngineError


async def realtime(request: web.Request) -> web.StreamResponse:
    async with limits.session_slot(request):  # a 429 before the upgrade
        return await _serve(request)


async def _serve(request: web.Request) -> web.WebSocketResponse:
    runtime = request.app[RUNTIME]
    settings = runtime.config.sessions
    protocols = [p for p in _offered_protocols(request) if p == "realtime"]
    image = base64_size(runtime.config.api.max_image_bytes) + 64  # an input_image data URL
    largest = max(settings.max_append_bytes, image) + 4096
    ws = web.WebSocketResponse(
        heartbeat=30, protocols=protocols, max_msg_size=limits.protocol_limit(largest)
    )
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    connection = RealtimeConnection(ws, runtime, request.app.get(DUPLEX_ROUTER))
    try:
        try:
            await connection.session.open()
        except EngineError as exc:
            await connection.report(exc)
            return ws
        await connection.send(server_event("session.created", session=connection.session_view()))
        async with limits.session_deadline(request):
            async for message in ws:
                if (size := limits.too_big(message, largest)) is not None:
                    await connection.error(limits.too_big_reason(size, largest), "message_too_big")
                    await limits.close_too_big(ws, size, largest)
                elif message.type is WSMsgType.TEXT:
                    await connection.handle(message.data)
                elif message.type is WSMsgType.BINARY:
                    await connection.error("send JSON text events, not binary", "binary_frame")
    except TimeoutError:
        await connection.error(
            f"session limit of {settings.max_minutes} minutes", "session_expired"
        )
    finally:
        # aiohttp may cancel the handler when the client's connection drops: the session's
        # leases and tasks must be released anyway, so the cleanup is shielded.
        await asyncio.shield(connection.end())
    return ws


def _offered_protocols(request: web.Request) -> list[str]:
    header = request.headers.get("Sec-WebSocket-Protocol", "")
    return [p.strip() for p in header.split(",") if p.strip()]


async def _close_sockets(app: web.Application) -> None:
    sockets: weakref.WeakSet[Any] = app[SOCKETS]
    for ws in list(sockets):
        await ws.close(code=1001, message=b"server shutting down")


def add_realtime_routes(app: web.Application) -> None:
    app[SOCKETS] = weakref.WeakSet()
    app[PER_KEY] = Counter()
    app.on_shutdown.append(_close_sockets)
    app.router.add_get("/v1/realtime", realtime)
