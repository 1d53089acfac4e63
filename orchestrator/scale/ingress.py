"""The ingress: Ray Serve's front for the voice API, a thin relay to one replica per request.

Ray Serve's HTTP proxy speaks ASGI, our voice API is aiohttp; rather than a second copy of the
routes, the ingress (FastAPI, on the Ray head, always on) checks the client's key, asks the GPU
deployment for a place (``VoiceReplica.place``: Ray picks the replica, warm before cold, never
a full one, and holds the request while none has room or none runs) and relays the request or
socket to that replica's own voice API, where the real routes serve it. The session stays on
that replica for its life: the ingress never moves it.

- ``/v1/realtime`` and ``/v1/duplex``: a bad key is refused before the upgrade as the replica
  refuses it (401, ``invalid_api_key``), as is a duplex client without ``text_prompt`` (400:
  no replica is woken for it); else accepted at once; while no replica runs (scaled
  to zero) a Realtime client is told ``waking`` (``engines: ["replica"]``) now and every
  ``waking_interval_s``, as the gateway tells it while the host boots (a duplex client hears
  nothing: its protocol has no such message, and its first byte is the replica's handshake).
  What the client sends meanwhile waits in the socket. Text and binary messages pass as they
  are, and a close with its code and reason. How a session is refused once accepted (a
  Realtime client gets an ``error`` event first, a duplex client the close alone):

      queue full (``[scale] max_queued_sessions``)    sessions_full; close 1013
      the replica refuses the upgrade: 503            service_unavailable; close 1013
      ... any other 4xx (too many sessions per key)   its status (bad_request, ...); close 1008
      ... 401 or 403 (the replica has other keys)     replica_key_rejected; close 1011
      ... 5xx                                         replica_refused; close 1011
- every other path: relayed as it came, the answer streamed back with ``X-Voice-Replica``;
  ``X-Voice-Waking: replica`` when it waited for a replica to start; queue full is a 503.
- ``/health/live`` answers here: a liveness probe must not wake a replica.
"""

# No "from __future__ import annotations" here: Ray Serve wraps these methods for FastAPI, which
# then resolves string annotations in Ray's module, not this one (a WebSocket would be a query).
import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from http import HTTPStatus
from typing import Any, Protocol, cast

import aiohttp
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response, StreamingResponse
from ray import serve
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

from orchestrator.api.app import BAD_KEY, presented_key
from orchestrator.api.errors import WireError
from orchestrator.api.realtime.wire import report_event, server_event
from orchestrator.api.translate import NO_KEY, WRONG_KEY, field_key
from orchestrator.api.translate import PATHS as LIBRETRANSLATE_PATHS
from orchestrator.config import AppConfig
from orchestrator.config.secrets import load_secrets
from orchestrator.scale.options import REPLICA
from orchestrator.scale.tickets import TICKET_HEADER
from services.duplex_protocol import required_text_prompt
from services.errors import InvalidInput

log = logging.getLogger(__name__)

REPLICA_HEADER = "X-Voice-Replica"
WAKING_HEADER = "X-Voice-Waking"
FULL = WireError(
    503, "sessions_full", "every replica is full and the queue too: try again shortly", None, 5
)
# Hop-by-hop headers (RFC 9110 7.6.1) and those the relay sets itself.
_DROPPED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        TICKET_HEADER.lower(),
    }
)
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

api = FastAPI(title="voice-orchestrator ingress", docs_url=None, redoc_url=None, openapi_url=None)


class Dialect(Protocol):
    """What each WebSocket protocol says while the ingress, not a replica, speaks."""

    def invalid(self, ws: WebSocket) -> WireError | None:
        """Why the request is refused before the upgrade (and before a replica is woken for
        it), as the replica would refuse it; None when it may go on."""
        ...

    async def waking(self, ws: WebSocket) -> None: ...

    async def refused(self, ws: WebSocket, error: WireError, code: int) -> None:
        """Tell the client why, then close its (accepted) socket with ``code``."""
        ...


class RealtimeDialect:
    def invalid(self, ws: WebSocket) -> WireError | None:
        return None

    async def waking(self, ws: WebSocket) -> None:
        await ws.send_text(
            json.dumps(server_event("waking", engines=["replica"], state="starting"))
        )

    async def refused(self, ws: WebSocket, error: WireError, code: int) -> None:
        await ws.send_text(json.dumps(report_event(error)))
        await ws.close(code=code, reason=error.code)


class DuplexDialect:
    def invalid(self, ws: WebSocket) -> WireError | None:
        try:
            required_text_prompt(ws.query_params)
        except InvalidInput as exc:
            return WireError(exc.status, exc.code, exc.message, exc.param)
        return None

    async def waking(self, ws: WebSocket) -> None:
        return None  # PersonaPlex's protocol has no such message: the client just waits

    async def refused(self, ws: WebSocket, error: WireError, code: int) -> None:
        # its clients read only kind-prefixed binary messages: the close reason says it
        await ws.close(code=code, reason=error.message[:120])


def _refusal(status: int) -> tuple[WireError, int]:
    """What the client hears, and the close code, when its replica refused the upgrade after
    the ingress accepted the client's socket (what a single host says with the status)."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    message = f"the replica refused the session: {status} {phrase}"
    if status in (401, 403):  # the ingress took the key: the replica reads other keys
        return WireError(502, "replica_key_rejected", message), 1011
    code = phrase.lower().replace(" ", "_")
    if status == 503:
        return WireError(503, code, message, retry_after_s=5), 1013  # try again later
    if 400 <= status < 500:
        return WireError(status, code, message), 1008  # policy violation: the request's fault
    return WireError(502, "replica_refused", message), 1011


async def _first(
    placing: DeploymentResponseGenerator[Any],
    at_zero: Callable[[], Awaitable[bool]],
    tell: Callable[[], Awaitable[None]] | None,
    interval_s: float,
) -> tuple[dict[str, str], bool]:
    """The place Ray found, and whether the request waited for a replica to start; while none
    runs, ``tell`` is called now and every ``interval_s``."""
    found = asyncio.ensure_future(placing.__anext__())
    waited = False
    try:
        while True:
            done, _ = await asyncio.wait({found}, timeout=0 if not waited else interval_s)
            if done:
                return found.result(), waited
            if not waited and not await at_zero():
                return await found, False
            waited = True
            if tell is not None:
                await tell()
    finally:
        if not found.done():
            found.cancel()


async def _relay(client: WebSocket, upstream: aiohttp.ClientWebSocketResponse) -> None:
    """Both directions at once, until either side closes; the other side is told."""

    async def down() -> None:
        async for message in upstream:
            if message.type is aiohttp.WSMsgType.TEXT:
                await client.send_text(message.data)
            elif message.type is aiohttp.WSMsgType.BINARY:
                await client.send_bytes(message.data)
        code = upstream.close_code or 1000
        with suppress(RuntimeError, WebSocketDisconnect):
            await client.close(code=code if code != 1006 else 1011)

    async def up() -> None:
        try:
            while True:
                message = await client.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("text") is not None:
                    await upstream.send_str(message["text"])
                elif message.get("bytes") is not None:
                    await upstream.send_bytes(message["bytes"])
        finally:
            await upstream.close()

    tasks = [
        asyncio.create_task(down(), name="relay-down"),
        asyncio.create_task(up(), name="relay-up"),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _cancel(placing: DeploymentResponseGenerator[Any]) -> None:
    """Give the place back if the replica still holds it (it also frees it by itself)."""
    placing.cancel()  # type: ignore[no-untyped-call]


def _forwarded(headers: Any, ticket: str) -> dict[str, str]:
    out = {k: v for k, v in headers.items() if k.lower() not in _DROPPED}
    for name in list(out):
        if name.lower().startswith("sec-websocket"):
            del out[name]  # aiohttp's client makes its own handshake
    out[TICKET_HEADER] = ticket
    return out


def _protocols(headers: Any) -> list[str]:
    offered = headers.get("sec-websocket-protocol", "")
    return [p.strip() for p in offered.split(",") if p.strip()]


def _url(base: str, path: str, query: str) -> str:
    return f"{base}{path}?{query}" if query else f"{base}{path}"


@serve.ingress(api)
class VoiceIngress:
    """Built by Ray Serve (``app.py``); ``replicas`` is the GPU deployment's handle.

    Last in the module: ``serve.ingress`` pickles the class at once, with the module's
    helpers it uses; defined below it, they would be missing in the replica."""

    def __init__(self, config: AppConfig, replicas: DeploymentHandle[Any]) -> None:
        self.config = config
        self.secrets = load_secrets(config.state.dir)
        self.replicas = replicas
        self.http: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self.http is None:  # made on the replica's loop, at the first request
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
            self.http = aiohttp.ClientSession(timeout=timeout, auto_decompress=False)
        return self.http

    @api.get("/health/live")
    async def live(self) -> dict[str, str]:
        return {"status": "alive"}

    @api.websocket("/v1/realtime")
    async def realtime(self, websocket: WebSocket) -> None:
        await self._socket(websocket, RealtimeDialect())

    @api.websocket("/v1/duplex")
    async def duplex(self, websocket: WebSocket) -> None:
        await self._socket(websocket, DuplexDialect())

    @api.api_route("/{path:path}", methods=_METHODS)
    async def relay(self, request: Request, path: str) -> Response:
        in_headers = self._key_valid(request.headers)
        if not in_headers and request.url.path not in LIBRETRANSLATE_PATHS:
            return JSONResponse(
                {"error": BAD_KEY.body()}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        body = await request.body()  # read only once the request may go on
        if not in_headers and (refused := self._body_key_refusal(request, body)):
            return refused
        placing = self._place()
        try:
            place, waited = await _first(placing, self._at_zero, None, self._interval_s)
            headers = _forwarded(request.headers, place["ticket"])
            url = _url(place["url"], request.url.path, request.url.query)
            upstream = await self._client().request(request.method, url, headers=headers, data=body)
        except BackPressureError:
            _cancel(placing)
            return JSONResponse(
                {"error": FULL.body()}, status_code=503, headers={"Retry-After": "5"}
            )
        except BaseException:
            _cancel(placing)
            raise
        out = {k: v for k, v in upstream.headers.items() if k.lower() not in _DROPPED}
        out[REPLICA_HEADER] = place["replica"]
        if waited:
            out[WAKING_HEADER] = "replica"

        async def stream() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.content.iter_any():
                    yield chunk
            finally:
                upstream.release()
                _cancel(placing)

        return StreamingResponse(stream(), status_code=upstream.status, headers=out)

    async def _socket(self, websocket: WebSocket, dialect: Dialect) -> None:
        if not self._key_valid(websocket.headers):
            refusal = JSONResponse(
                {"error": BAD_KEY.body()}, BAD_KEY.status, headers={"WWW-Authenticate": "Bearer"}
            )
            await websocket.send_denial_response(refusal)  # the replica's own 401, not a 403
            return
        if (invalid := dialect.invalid(websocket)) is not None:
            await websocket.send_denial_response(
                JSONResponse({"error": invalid.body()}, invalid.status)
            )
            return
        offered = _protocols(websocket.headers)
        await websocket.accept(subprotocol="realtime" if "realtime" in offered else None)
        placing = self._place()
        try:
            try:
                place, _ = await _first(
                    placing, self._at_zero, lambda: dialect.waking(websocket), self._interval_s
                )
            except BackPressureError:
                await dialect.refused(websocket, FULL, 1013)
                return
            url = _url(place["url"], websocket.url.path, websocket.url.query)
            headers = _forwarded(websocket.headers, place["ticket"])
            try:
                upstream = await self._client().ws_connect(
                    url, headers=headers, protocols=offered, max_msg_size=0, autoping=True
                )
            except aiohttp.WSServerHandshakeError as exc:  # the replica answered: say what
                if exc.status in (401, 403):
                    log.error("a replica refused a key the ingress took: are the keys the same?")
                await dialect.refused(websocket, *_refusal(exc.status))
                return
            async with upstream:
                await _relay(websocket, upstream)
        finally:
            _cancel(placing)

    def _place(self) -> DeploymentResponseGenerator[Any]:
        return cast(
            DeploymentResponseGenerator[Any], self.replicas.options(stream=True).place.remote()
        )

    def _key_valid(self, headers: Any) -> bool:
        key = presented_key(headers)
        return bool(key) and self.secrets.api_key_valid(key)

    def _body_key_refusal(self, request: Request, body: bytes) -> Response | None:
        """A LibreTranslate client with no key in its headers: None when its ``api_key`` field
        holds a valid one (the replica checks it again), else the refusal in LibreTranslate's
        words."""
        content_type = request.headers.get("content-type", "")
        key = field_key(request.method, content_type, body, request.query_params)
        if not key:
            return JSONResponse({"error": NO_KEY}, 400)
        return None if self.secrets.api_key_valid(key) else JSONResponse({"error": WRONG_KEY}, 403)

    async def _at_zero(self) -> bool:
        """Whether no replica of the GPU deployment runs (scaled to zero, or still starting)."""
        context = serve.get_replica_context()
        status = await asyncio.to_thread(serve.status)
        app = status.applications.get(context.app_name)
        deployment = app.deployments.get(REPLICA) if app is not None else None
        if deployment is None:
            return True
        return not any(n for state, n in deployment.replica_states.items() if state == "RUNNING")

    @property
    def _interval_s(self) -> float:
        return self.config.scale.waking_interval_s
