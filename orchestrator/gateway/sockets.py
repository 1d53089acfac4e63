"""The WebSocket routes' common frame: accept at once, hold while the host wakes, then relay.

``/v1/realtime`` and ``/v1/duplex`` accept the client's socket before the host is up (a phone
waits better on an open socket than on a pending upgrade) and hand it to a ``Passage``
(``passage.py``), which holds, connects to the host and relays. What differs between the two
protocols while the gateway speaks for itself is a ``Dialect``: the Realtime one sends events
(``waking``, ``error``), the duplex one stays silent, since PersonaPlex clients wait for the
host's handshake byte and understand nothing else.

How a session ends:

    the client closes (code c)          the host's socket is closed with c (1001 if it vanished)
    the host closes (code c, reason)    the client's socket is closed with c and the reason
                                        (1001, its server going away: the gate is told too)
    the host vanishes (no close frame)  gate.host_lost; error host_lost; close 1011
    the host refuses the upgrade        error (its status); close 1008 (4xx), 1013 (503), 1011
    the start failed (backoff)          error host_start_failed; close 1013 "try again later":
                                        the gate raises it only when no start may be tried
                                        now, so the client reconnects after retry_after_s
    a message over the host's limit     error message_too_big; close 1009 (as the host does)
    the gateway shuts down              close 1001; the host's socket closed with 1001

The whole session, hold included, runs inside ``gate.use("session")``: the host is neither
stopped under it nor left running after it.
"""

from __future__ import annotations

import weakref
from http import HTTPStatus
from typing import Any, Protocol

from aiohttp import WSCloseCode, web

from orchestrator.api.errors import WireError
from orchestrator.gateway.keys import SOCKETS
from orchestrator.gateway.upstream import ws_protocols

PROTOCOL_SLACK = 4
"""aiohttp's own message limit is this many times the host's, as on the host
(``orchestrator/api/limits.py``): a message over the host's limit is read whole, so the client
is told why before the 1009, instead of meeting aiohttp's abrupt close."""
CLIENT_HEARTBEAT_S = 30.0


class Dialect(Protocol):
    """What a protocol says while the gateway, not the host, speaks to the client."""

    name: str
    message_limit: int
    """The host's largest client message, in bytes."""

    async def waking(self, ws: web.WebSocketResponse, snapshot: dict[str, Any]) -> None:
        """The host is not ready yet (``snapshot`` is ``HostSnapshot.to_json()``)."""
        ...

    async def refused(self, ws: web.WebSocketResponse, error: BaseException | WireError) -> None:
        """Something the client must hear about before its socket is closed, or its message
        dropped: a full buffer, a message too big, a host lost or refusing."""
        ...


def refusal(status: int) -> tuple[WireError, int]:
    """What the client is told, and the close code, when the host refuses the upgrade.

    A 401 means the host does not take the gateway's key (a deployment mistake, not the
    client's); other statuses are the host's answer to the client's request."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    message = f"the GPU host refused the session: {status} {phrase}"
    if status in (401, 403):
        return WireError(502, "host_key_rejected", "the GPU host refused the gateway's key"), 1011
    code = phrase.lower().replace(" ", "_")
    if status == 503:
        return WireError(503, code, message, retry_after_s=5), WSCloseCode.TRY_AGAIN_LATER
    if 400 <= status < 500:
        return WireError(status, code, message), WSCloseCode.POLICY_VIOLATION
    return WireError(502, "host_refused", message), WSCloseCode.INTERNAL_ERROR


def sendable(code: int | None, otherwise: int) -> int:
    """``code`` if a close frame may carry it, else ``otherwise`` (1005, 1006 and 1015 only
    say what happened to a connection; they are never sent)."""
    if code is None or code in (1005, 1006, 1015) or not (1000 <= code < 5000):
        return otherwise
    return code


def accept(request: web.Request, dialect: Dialect) -> web.WebSocketResponse:
    """The client's socket, not yet prepared; a plain GET is a 400 here, before any wake."""
    ws = web.WebSocketResponse(
        protocols=ws_protocols(request),
        heartbeat=CLIENT_HEARTBEAT_S,
        max_msg_size=dialect.message_limit * PROTOCOL_SLACK,
    )
    if not ws.can_prepare(request).ok:
        raise web.HTTPBadRequest(text=f"{request.path} is a WebSocket: send an Upgrade request")
    return ws


async def close_sockets(app: web.Application) -> None:
    """On shutdown: every client socket closed with 1001 (each passage then closes the host's)."""
    sockets = app[SOCKETS]
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"gateway shutting down")


def add_socket_keys(app: web.Application) -> None:
    sockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
    app[SOCKETS] = sockets
    app.on_shutdown.append(close_sockets)
