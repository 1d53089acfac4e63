"""Limits the two WebSocket routes (``/v1/realtime`` and ``/v1/duplex``) share.

- **Sessions per API key** (``sessions.max_per_key``): one count per key across both routes;
  one more is a 429 before the upgrade. Behind a gateway (its key in ``VO_GATEWAY_KEYS``) the
  count is per client, named by the gateway's ``X-Voice-Client``.
- **Session length** (``sessions.max_minutes``): ``session_deadline`` bounds the message loop.
- **Message size**: aiohttp's own ``max_msg_size`` closes with 1009, but it does so before the
  handler sees anything and while the client may still be sending: the server then drops a
  socket with unread data, which the kernel answers with a reset, and the client sees 1006
  and never our close frame. So aiohttp's limit is set ``PROTOCOL_SLACK`` times higher, and
  the route checks ours: a message over it has been read whole, so the route can say why
  (a Realtime ``error`` event) and close with 1009 and a reason the client does receive.
  Only frames past aiohttp's higher limit still meet aiohttp's abrupt close.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web

from orchestrator.api.keys import PER_KEY
from orchestrator.app.runtime import API_KEY_USED, RUNTIME

PROTOCOL_SLACK = 4


def protocol_limit(limit: int) -> int:
    """aiohttp's ``max_msg_size`` for a route whose own limit is ``limit`` bytes."""
    return limit * PROTOCOL_SLACK


def too_big(message: WSMessage, limit: int) -> int | None:
    """The size of ``message`` when it is over ``limit`` bytes, else ``None``."""
    if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
        return None
    data = message.data
    size = len(data.encode()) if isinstance(data, str) else len(data)
    return size if size > limit else None


def too_big_reason(size: int, limit: int) -> str:
    return f"message of {size} bytes is over the limit of {limit}"


async def close_too_big(ws: web.WebSocketResponse, size: int, limit: int) -> None:
    """Close with 1009 and the reason (a close reason holds at most 123 bytes)."""
    reason = too_big_reason(size, limit).encode()[:123]
    await ws.close(code=WSCloseCode.MESSAGE_TOO_BIG, message=reason)


@asynccontextmanager
async def session_slot(request: web.Request) -> AsyncIterator[None]:
    """Count one open session against the request's key while the block runs, or a 429 when
    the key holds ``sessions.max_per_key`` already. Enter it before the upgrade, so that the
    refusal is a status code; the check and the count happen with no await between them."""
    runtime = request.app[RUNTIME]
    most = runtime.config.sessions.max_per_key
    key = request.get(API_KEY_USED, "")
    client = request.headers.get("X-Voice-Client", "")
    if client and runtime.secrets.is_gateway_key(key):
        key = f"client:{client}"  # a gateway's sessions count per client it names
    per_key = request.app[PER_KEY]
    if per_key[key] >= most:
        raise web.HTTPTooManyRequests(text=f"at most {most} sessions per key")
    per_key[key] += 1
    try:
        yield
    finally:
        per_key[key] -= 1


def session_deadline(request: web.Request) -> asyncio.Timeout:
    """``sessions.max_minutes`` from now: a ``TimeoutError`` when the session has run out."""
    return asyncio.timeout(request.app[RUNTIME].config.sessions.max_minutes * 60)
