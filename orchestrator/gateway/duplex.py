"""``GET /v1/duplex`` through the gateway: PersonaPlex's protocol, where silence is the rule.

PersonaPlex clients send nothing before the server's handshake (the single byte ``0x00``) and
understand nothing but binary messages of its kinds, so while the host boots the gateway sends
nothing at all: the socket is open, and the first byte the client gets is the host's
handshake, relayed with everything after it. Frames a client sends early are kept (bounded by
``realtime_buffer_bytes``; beyond, dropped) and replayed to the host in order. Failures are
told by the close code and its reason alone. A missing ``text_prompt`` is a 400 before the
upgrade, as on the host, without waking it.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from orchestrator.api.errors import WireError
from orchestrator.gateway.passage import serve
from services.duplex_protocol import required_text_prompt

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 1 << 20
"""The host's largest duplex message (``orchestrator/api/duplex.py``)."""


class DuplexDialect:
    name = "duplex"
    message_limit = MESSAGE_LIMIT

    async def waking(self, ws: web.WebSocketResponse, snapshot: dict[str, Any]) -> None:
        """Nothing: a PersonaPlex client waits for the handshake byte."""

    async def refused(self, ws: web.WebSocketResponse, error: BaseException | WireError) -> None:
        """Nothing on the wire (the close reason says it); the log keeps it."""
        log.info("duplex session on the gateway: %s", error)


async def duplex(request: web.Request) -> web.StreamResponse:
    required_text_prompt(request.query)  # a 400 before the upgrade, as the host says it
    return await serve(request, DuplexDialect())


def add_duplex_route(app: web.Application) -> None:
    app.router.add_get("/v1/duplex", duplex)
