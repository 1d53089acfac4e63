"""The clients' API key, checked at the gateway exactly as the host checks it.

``Authorization: Bearer K``, or for browsers (which cannot set headers on a WebSocket) the
subprotocol ``openai-insecure-api-key.K``; every route but ``OPEN_PATHS`` needs one of the keys
in ``Secrets``. The client's key stops here: the host is sent the gate's own ``host_key``
(``upstream.py``), so a student's key is never a key to the GPU host, and a refused client
never reaches the gate (nothing wakes for a bad key).
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from orchestrator.api.errors import WireError, error_response
from orchestrator.gateway.keys import SECRETS

OPEN_PATHS = frozenset({"/health/live"})
KEY_PROTOCOL = "openai-insecure-api-key."
MISSING_KEY = "missing or invalid API key: send 'Authorization: Bearer <key>'"


def offered_protocols(request: web.Request) -> list[str]:
    """The WebSocket subprotocols the client offered, in its order."""
    header = request.headers.get("Sec-WebSocket-Protocol", "")
    return [p.strip() for p in header.split(",") if p.strip()]


def client_key(request: web.Request) -> str:
    """The key the client presented, or ``""``."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return token.strip()
    for protocol in offered_protocols(request):
        if protocol.startswith(KEY_PROTOCOL) and len(protocol) > len(KEY_PROTOCOL):
            return protocol[len(KEY_PROTOCOL) :].strip()
    return ""


@web.middleware
async def require_client_key(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in OPEN_PATHS:
        return await handler(request)
    key = client_key(request)
    if not key or not request.app[SECRETS].api_key_valid(key):
        return error_response(
            WireError(401, "invalid_api_key", MISSING_KEY),
            headers={"WWW-Authenticate": "Bearer"},
        )
    return await handler(request)
