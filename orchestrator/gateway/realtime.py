"""``GET /v1/realtime`` through the gateway: accepted at once, told ``waking`` while the host
boots, then the host's own Realtime session, message for message.

While the host is not ready the client gets our extension event (the host sends a ``waking``
of its own, with engine names, while its engines load; this one names the host)::

    {"type": "waking", "event_id": ..., "engines": ["host"], "state": "booting",
     "eta_s": 41.0, "progress": 0.55}

and the gateway's refusals as Realtime ``error`` events (``buffer_full``, ``message_too_big``,
``host_lost``, ``host_start_failed``). The host's ``session.created`` comes once it is ready;
what the client sent meanwhile reaches the host after it, in order.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from orchestrator.api.errors import WireError
from orchestrator.config.models import SessionsConfig
from orchestrator.gateway.passage import serve
from orchestrator.gateway.wire import error_event, server_event

ENVELOPE_BYTES = 4096
MESSAGE_LIMIT = int(SessionsConfig.model_fields["max_append_bytes"].default) + ENVELOPE_BYTES
"""The host's largest Realtime message with its default ``[sessions] max_append_bytes`` (an
append and its JSON envelope, as ``orchestrator/api/realtime/route.py`` counts it). A host
configured for larger appends is still held to this at the gateway."""


class RealtimeDialect:
    name = "realtime"
    message_limit = MESSAGE_LIMIT

    async def waking(self, ws: web.WebSocketResponse, snapshot: dict[str, Any]) -> None:
        event = server_event(
            "waking",
            engines=["host"],
            state=snapshot["state"],
            eta_s=snapshot["eta_s"],
            progress=snapshot["progress"],
        )
        await _send(ws, event)

    async def refused(self, ws: web.WebSocketResponse, error: BaseException | WireError) -> None:
        await _send(ws, error_event(error))


async def _send(ws: web.WebSocketResponse, event: dict[str, Any]) -> None:
    if not ws.closed:
        await ws.send_str(json.dumps(event))


async def realtime(request: web.Request) -> web.StreamResponse:
    return await serve(request, RealtimeDialect())


def add_realtime_route(app: web.Application) -> None:
    app.router.add_get("/v1/realtime", realtime)
