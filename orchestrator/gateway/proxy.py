"""REST pass-through: every ``/v1/...`` route of the voice API, held while the host wakes.

A request is counted as the host's activity (``gate.use("request")``) from its arrival to its
last byte, and waits up to ``hold_s`` for the host (``gate.ready_url``); past that it is
answered 503 ``host_waking`` with the host's state, ETA and ``Retry-After``, or 503
``host_start_failed`` when the start failed. Then method, path, query and body go to the host
as they came (the body streamed, never read whole: uploads are up to 25 MB), and the host's
status, headers and body come back chunk by chunk as they arrive (a streamed chat completion
reaches the client event by event). ``X-Voice-Waking`` says ``host`` when the host was not up
when the request came, before what the host itself had to load (``host,tts``).

With a bridge (``[gateway.bridge]``), a request that came while the host was not up and is
still waiting after ``bridge_after_s`` (or meets a failed start) is served by the bridge
instead, with ``X-Voice-Waking: host`` and ``X-Voice-Bridge: 1``; a bridge not ready yet, or
one that fails before it read any of the request's body, leaves it waiting for the host.

Who broke a request decides what is said:

    the host could not be reached, or broke off     gate.host_lost; 502 host_lost (or, once
                                                    the headers went out, the client's
                                                    connection is cut: never a clean end)
    the bridge broke off                            502 bridge_lost (or the cut), logged; the
                                                    host is not blamed: nothing to the gate
    the host refused the gateway's key              502 host_key_rejected, logged
    the client's upload broke off                   the client's problem: nothing to the gate
    the client went away mid-response               the host's response is let go
    the gateway shuts down while the request waits  503 with Retry-After (never a hold that
                                                    keeps the shutdown waiting)

``/host/health``, ``/host/health/ready`` and ``/host/metrics`` read the host's own health and
metrics for operators, only while it is up: reading them neither wakes the host nor keeps
it awake (a scraper would otherwise hold it up forever).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable

import aiohttp
from aiohttp import web

from orchestrator.api.errors import WireError, error_response
from orchestrator.gateway.errors import HostLost, HostStartFailed, HostWaking
from orchestrator.gateway.gate import HostGate
from orchestrator.gateway.keys import BRIDGE, CLOSING, CONFIG, GATE, HTTP
from orchestrator.gateway.lifecycle import UP
from orchestrator.gateway.upstream import (
    SKIP_AUTO_HEADERS,
    host_url,
    request_headers,
    response_headers,
)

log = logging.getLogger(__name__)

CHUNK = 1 << 16
BRIDGED = "X-Voice-Bridge"  # the bridge, not the host, answered
UP_ANSWERS_S = 1.0  # an up host's URL comes at once; this bounds the race with its going down
OWN_ROUTES = {
    "/v1/host": "GET",
    "/v1/host/events": "GET",
    "/v1/wake": "POST",
    "/v1/realtime": "GET",
    "/v1/duplex": "GET",
}
"""The routes the gateway serves itself: another method is a 405 here, never a reason to
wake the host."""
BRIDGE_LOST = WireError(502, "bridge_lost", "the gateway's bridge went away; retry the request")


class BridgeUnreachable(Exception):
    """The bridge failed before it read any of the request: it can still go to the host."""


class ClientBody:
    """The client's body, streamed to the host; remembers whether reading it failed, so that
    a client that broke its own upload is not taken for a host that went away."""

    def __init__(self, request: web.Request) -> None:
        self._content = request.content
        self.failed = False
        self.read = False  # some of it was taken: the request cannot be sent elsewhere

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._content.iter_chunked(CHUNK):
                self.read = True
                yield chunk
        except Exception:
            self.failed = True
            raise


async def proxy(request: web.Request) -> web.StreamResponse:
    """Any ``/v1/...`` request but the gateway's own: held, then passed to the host."""
    if (method := OWN_ROUTES.get(request.path)) is not None:
        raise web.HTTPMethodNotAllowed(request.method, [method])
    gate = request.app[GATE]
    host_woke = gate.snapshot().state not in UP
    hold_s = request.app[CONFIG].hold_s
    bridge = request.app.get(BRIDGE)
    with gate.use("request"):
        if host_woke and bridge is not None and bridge.after_s < hold_s:
            try:
                base = await _unless_closing(request, gate.ready_url(bridge.after_s))
            except (HostWaking, HostStartFailed):
                bridged = bridge.url()
                if bridged is not None:
                    try:
                        return await forward(
                            request, gate, bridged, request.raw_path, host_woke=True, bridged=True
                        )
                    except BridgeUnreachable:
                        pass  # nothing was sent: it waits for the host as without a bridge
                hold_s -= bridge.after_s
            else:
                return await forward(request, gate, base, request.raw_path, host_woke=True)
        base = await _unless_closing(request, gate.ready_url(hold_s))
        return await forward(request, gate, base, request.raw_path, host_woke=host_woke)


async def _unless_closing(request: web.Request, waiting: Awaitable[str]) -> str:
    """``waiting``'s result, or a 503 when the gateway shuts down first: a held request
    must not keep the gateway's shutdown waiting for the host."""
    held = asyncio.ensure_future(waiting)
    closing = asyncio.ensure_future(request.app[CLOSING].wait())
    try:
        await asyncio.wait({held, closing}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (held, closing):
            task.cancel()
        await asyncio.gather(held, closing, return_exceptions=True)
    if held.cancelled():
        raise web.HTTPServiceUnavailable(
            text="the gateway is shutting down; retry", headers={"Retry-After": "5"}
        )
    return held.result()


async def host_health(request: web.Request) -> web.StreamResponse:
    """The host's ``/health``, ``/health/ready`` or ``/metrics``, while it is up."""
    gate = request.app[GATE]
    state = gate.snapshot().state
    if state not in UP:
        return error_response(
            WireError(
                503,
                "host_not_up",
                f"the GPU host is {state.value}; its health is read only while it is up "
                "(POST /v1/wake starts it)",
                extra={"state": state.value},
            )
        )
    base = await gate.ready_url(UP_ANSWERS_S)  # up: answers at once
    path_qs = request.raw_path.removeprefix("/host")
    return await forward(request, gate, base, path_qs, host_woke=False)


async def forward(
    request: web.Request,
    gate: HostGate,
    base: str,
    path_qs: str,
    *,
    host_woke: bool,
    bridged: bool = False,
) -> web.StreamResponse:
    """``request`` to the host (or the bridge, ``bridged``) at ``base + path_qs``, and its
    response back as it streams."""
    body = ClientBody(request) if request.body_exists else None
    try:
        upstream = await request.app[HTTP].request(
            request.method,
            host_url(base, path_qs),
            headers=request_headers(request, gate.host_key),
            data=body.chunks() if body is not None else None,
            allow_redirects=False,
            skip_auto_headers=SKIP_AUTO_HEADERS,
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        if body is not None and body.failed:
            raise web.HTTPBadRequest(text="the request body broke off before its end") from exc
        if bridged:
            log.warning("the bridge did not serve %s %s: %s", request.method, request.path, exc)
            if body is None or not body.read:
                raise BridgeUnreachable(str(exc)) from exc
            return error_response(BRIDGE_LOST)
        raise _lost(request, gate, exc) from exc
    async with upstream:
        if upstream.status == 401:
            who = "bridge" if bridged else "GPU host"
            log.error(
                "the %s at %s refused the gateway's key (401): check its VO_API_KEYS", who, base
            )
            rejected = f"the {who} refused the gateway's key"
            return error_response(WireError(502, "host_key_rejected", rejected))
        response = web.StreamResponse(
            status=upstream.status,
            reason=upstream.reason,
            headers=response_headers(upstream.headers, host_woke),
        )
        if bridged:
            response.headers[BRIDGED] = "1"
        await response.prepare(request)
        await _stream(request, gate, upstream, response, bridged=bridged)
    return response


async def _stream(
    request: web.Request,
    gate: HostGate,
    upstream: aiohttp.ClientResponse,
    response: web.StreamResponse,
    *,
    bridged: bool,
) -> None:
    """The host's (or the bridge's) body to the client, each chunk as it arrives."""
    while True:
        try:
            chunk = await upstream.content.readany()
        except (aiohttp.ClientError, TimeoutError) as exc:
            if bridged:  # the bridge broke off: the host has nothing to do with it
                log.warning("the bridge broke off %s %s: %s", request.method, request.path, exc)
            else:
                _lost(request, gate, exc)
            _cut(request)  # the client must not take a truncated body for a whole one
            return
        if not chunk:
            break
        try:
            await response.write(chunk)
        except ConnectionError:  # the client went away: let the host's response go
            return
    try:
        await response.write_eof()
    except ConnectionError:
        return


def _lost(request: web.Request, gate: HostGate, exc: BaseException) -> HostLost:
    reason = f"{request.method} {request.path}: {type(exc).__name__}: {exc}"
    log.warning("host lost under a request: %s", reason)
    gate.host_lost(reason)
    return HostLost("the GPU host went away during the request; retry it")


def _cut(request: web.Request) -> None:
    """End the client's connection without ending the response: what was sent arrives,
    then the client sees a body that broke off (a chunked body without its last chunk)."""
    if request.transport is not None:
        request.transport.close()
