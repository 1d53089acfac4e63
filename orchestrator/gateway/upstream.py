"""How the gateway talks to the host: the client session, the URLs and the header rules.

Requests to the host carry the gate's ``host_key``, never the client's. Hop-by-hop headers
(RFC 9110 7.6.1) belong to one connection and are dropped both ways, with the ``Connection``
header's own list; ``Host`` is the host's; ``Date`` and ``Server`` are the gateway's to send.
``Content-Length`` passes when the client (or the host) gave one, since the body is streamed
byte for byte; else the body is chunked. Bodies are not decompressed on the way
(``auto_decompress=False``), so ``Content-Encoding`` stays true. The session keeps no cookies:
one client's cookie must never be sent on another's request.

WebSockets to the host carry only what the host reads: the key, ``OpenAI-Beta``, the client's
``User-Agent``, and the forwarding headers; the ``realtime`` subprotocol is offered when the
client offered it, and the ``openai-insecure-api-key.`` one never.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from orchestrator.gateway.auth import client_key, offered_protocols

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
NOT_FORWARDED = frozenset({"host", "authorization", "expect", "cookie", "x-voice-client"})
NOT_RETURNED = frozenset({"date", "server"})
WS_FORWARDED = ("OpenAI-Beta", "User-Agent")
# aiohttp adds these when absent; the host must see what the client sent, not the gateway.
SKIP_AUTO_HEADERS = frozenset({"User-Agent", "Accept", "Accept-Encoding", "Content-Type"})
WAKING = "X-Voice-Waking"
CLIENT = "X-Voice-Client"  # who the client is, for the host's per-client limits

CONNECT_S = 10.0  # a host that does not accept a connection this fast is not there
READ_S = 300.0  # no byte for this long: the host is wedged (a reply's first byte waits on
# its engines loading, bounded by the host's own wake timeout, well under this)
HEARTBEAT_S = 30.0  # WebSocket pings to the host: a silent dead host is noticed
WS_CLOSE_S = 10.0


def open_session() -> aiohttp.ClientSession:
    """The gateway's one client session to the host.

    No limit on connections: every WebSocket holds one for its whole life, and the host's own
    limits (sessions per key, admission) bound what it takes."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_S, sock_read=READ_S),
        connector=aiohttp.TCPConnector(limit=0),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
    )


def _connection_tokens(headers: Mapping[str, str]) -> set[str]:
    """Header names the ``Connection`` header marks as hop-by-hop too."""
    return {t.strip().lower() for t in headers.get("Connection", "").split(",") if t.strip()}


def _passed(headers: Mapping[str, str], drop: Iterable[str]) -> CIMultiDict[str]:
    dropped = HOP_BY_HOP | frozenset(drop) | _connection_tokens(headers)
    kept: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        if name.lower() not in dropped:
            kept.add(name, value)
    return kept


def client_id(key: str) -> str:
    """A stable name for a client key that does not reveal it: the host counts sessions per
    client under the gateway's one key by it (``sessions.max_per_key``)."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def forwarded(request: web.Request) -> dict[str, str]:
    """``X-Forwarded-For`` (appended to what the client's own proxies said), ``-Proto``, and
    ``X-Voice-Client``: the client's id (a client's own ``X-Voice-Client`` is dropped)."""
    chain = [p for p in (request.headers.get("X-Forwarded-For"), request.remote) if p]
    return {
        "X-Forwarded-For": ", ".join(chain),
        "X-Forwarded-Proto": request.scheme,
        CLIENT: client_id(client_key(request)),
    }


def request_headers(request: web.Request, host_key: str) -> CIMultiDict[str]:
    """The headers of a REST request to the host."""
    headers = _passed(request.headers, NOT_FORWARDED)
    headers.update(forwarded(request))
    headers["Authorization"] = f"Bearer {host_key}"
    return headers


def response_headers(upstream: Mapping[str, str], host_woke: bool) -> CIMultiDict[str]:
    """The headers of the host's response as the client gets them."""
    headers = _passed(upstream, NOT_RETURNED)
    waking = merge_waking(host_woke, upstream.get(WAKING))
    headers.popall(WAKING, None)
    if waking:
        headers[WAKING] = waking
    return headers


def merge_waking(host_woke: bool, upstream: str | None) -> str:
    """``X-Voice-Waking``: ``host`` first when the host had to wake for this request, then
    what the host itself had to load (``host,tts``); empty when nothing woke."""
    parts = ["host"] if host_woke else []
    for part in (upstream or "").split(","):
        if part.strip() and part.strip() not in parts:
            parts.append(part.strip())
    return ",".join(parts)


def ws_headers(request: web.Request, host_key: str) -> dict[str, str]:
    """The headers of the WebSocket upgrade to the host."""
    headers = {name: request.headers[name] for name in WS_FORWARDED if name in request.headers}
    headers.update(forwarded(request))
    headers["Authorization"] = f"Bearer {host_key}"
    return headers


def ws_protocols(request: web.Request) -> list[str]:
    """The subprotocols the gateway accepts from the client and offers the host: what the
    host itself accepts (``realtime``); the key protocol was the gateway's to read."""
    return [p for p in offered_protocols(request) if p == "realtime"]


def host_url(base: str, path_qs: str) -> URL:
    """``base`` (``http://10.0.0.5:11400``) joined with the client's path and query as it
    sent them (already encoded: not encoded a second time)."""
    return URL(base.rstrip("/") + path_qs, encoded=True)


def ws_url(base: str, path_qs: str) -> URL:
    """The host's WebSocket URL for ``path_qs`` (http becomes ws, https wss)."""
    url = host_url(base, path_qs)
    return url.with_scheme("wss" if url.scheme == "https" else "ws")
