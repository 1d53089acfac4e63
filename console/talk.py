"""The Talk page's voice socket: ``GET /talk/realtime``, a relay to this server's ``/v1/realtime``.

The page speaks the OpenAI Realtime protocol to the console's own origin; the console opens the
real session on the voice API port with the server's own API key, and passes every message
through both ways. So the browser never holds an API key, and what the operator hears is the
voice path a student's app takes (key check, session limits, engines woken and leased).

    browser --(cookie, Origin, CSRF)--> console /talk/realtime --(Bearer key)--> API /v1/realtime

Who may open it: a signed-in console user (``console.auth``); a socket whose ``Origin`` is not
the console's own is refused (403, as every state-changing request is), and a cookie session
must offer its CSRF token as the subprotocol ``vo-csrf.<token>`` beside ``realtime`` (a page
cannot set headers on a WebSocket). HTTP Basic clients carry no cookie and need no token.

One addition to what the API says: after each ``response.done`` of a spoken turn, the session's
server-side stage timings (``CascadeSession.summary``: transcript, first token, TTS first
byte, first audio) come as our own ``console.turn_timings`` event, read from the runtime this
console shares with the API. A session opened here is real voice activity: it wakes hibernated
engines and counts against the key's ``sessions.max_per_key`` like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from console.context import CONSOLE, IDENTITY, record
from console.origin import origin_refusal
from orchestrator.app.runtime import RUNTIME, Runtime
from orchestrator.config import ServerConfig
from services.tasks import TaskSet

log = logging.getLogger(__name__)

PATH = "/talk/realtime"
PROTOCOL = "realtime"
CSRF_PROTOCOL = "vo-csrf."
TIMINGS = "console.turn_timings"
WILDCARDS = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}
CONNECT_TIMEOUT_S = 10.0
SLACK = 4  # the API's own limit speaks first (an error event), as its route says why
UNSENDABLE_CLOSE = {1005, 1006, 1015}  # what a peer's close is reported as, never sent


@dataclass
class Talk:
    """What the relay shares: one HTTP client for the upstream sockets, and the open
    browser sockets (closed with 1001 on shutdown)."""

    http: aiohttp.ClientSession
    sockets: weakref.WeakSet[web.WebSocketResponse] = field(default_factory=weakref.WeakSet)


TALK = web.AppKey("console_talk", Talk)


def realtime_url(server: ServerConfig) -> str:
    """Where this server's voice API answers ``/v1/realtime``, seen from this process: a
    wildcard bind is reached on loopback."""
    host = WILDCARDS.get(server.api_host, server.api_host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"ws://{host}:{server.api_port}/v1/realtime"


def _offered(request: web.Request) -> list[str]:
    header = request.headers.get("Sec-WebSocket-Protocol", "")
    return [p.strip() for p in header.split(",") if p.strip()]


def refusal(request: web.Request) -> str | None:
    """Why this upgrade may not open a session (None: it may). Sign-in was checked before."""
    console = request.app[CONSOLE]
    why = origin_refusal(request.headers.get("Origin"), console.origins)
    if why is not None:
        return why
    identity = request.get(IDENTITY)
    if identity is not None and identity.session is not None:
        tokens = [p[len(CSRF_PROTOCOL) :] for p in _offered(request) if p.startswith(CSRF_PROTOCOL)]
        if not any(console.signer.csrf_valid(identity.session, t) for t in tokens):
            return f"missing or wrong CSRF token: offer subprotocol {CSRF_PROTOCOL}<token>"
    return None


def _error_event(message: str, code: str) -> str:
    error = {"type": "server_error", "code": code, "message": message, "param": None}
    return json.dumps({"type": "error", "error": error})


async def talk_socket(request: web.Request) -> web.StreamResponse:
    why = refusal(request)
    if why is not None:
        return web.json_response({"error": why}, status=403)
    runtime, talk = request.app[RUNTIME], request.app[TALK]
    largest = (runtime.config.sessions.max_append_bytes + 4096) * SLACK
    browser = web.WebSocketResponse(heartbeat=30, protocols=(PROTOCOL,), max_msg_size=largest)
    await browser.prepare(request)
    talk.sockets.add(browser)
    try:
        api = await _connect(request, browser)
        if api is not None:
            try:
                await record(request, "talk", target=realtime_url(runtime.config.server))
                await _relay(runtime, browser, api)
            finally:
                await api.close()
    finally:
        await browser.close()
    return browser


async def _connect(
    request: web.Request, browser: web.WebSocketResponse
) -> aiohttp.ClientWebSocketResponse | None:
    """The voice API's socket for this page, or None after telling the page why not."""
    runtime = request.app[RUNTIME]
    url = realtime_url(runtime.config.server)
    if not runtime.secrets.api_keys:
        await _refuse(request, browser, "this server has no API key (VO_API_KEYS)", "no_api_key")
        return None
    try:
        return await request.app[TALK].http.ws_connect(
            url,
            headers={"Authorization": f"Bearer {runtime.secrets.api_keys[0]}"},
            heartbeat=30,
            max_msg_size=0,  # our own server's events: it bounds what it sends
        )
    except aiohttp.WSServerHandshakeError as exc:
        code = "too_many_sessions" if exc.status == 429 else "voice_api_refused"
        why = f"the voice API at {url} refused the session: {exc.status} {exc.message}"
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        code, why = "voice_api_unreachable", f"the voice API at {url} cannot be reached: {exc!r}"
    await _refuse(request, browser, why, code)
    return None


async def _refuse(
    request: web.Request, browser: web.WebSocketResponse, why: str, code: str
) -> None:
    log.warning("talk: %s", why)
    await record(request, "talk", ok=False, error=why)
    await browser.send_str(_error_event(why, code))
    later = code in ("too_many_sessions", "voice_api_unreachable")
    close = aiohttp.WSCloseCode.TRY_AGAIN_LATER if later else aiohttp.WSCloseCode.INTERNAL_ERROR
    await browser.close(code=close, message=code.encode())


async def _relay(
    runtime: Runtime, browser: web.WebSocketResponse, api: aiohttp.ClientWebSocketResponse
) -> None:
    """Pass messages both ways until either side closes. When the API closed first, the page
    is closed with its code and reason (where a close frame may carry that code)."""
    tasks = TaskSet("talk")
    to_api = tasks.spawn("to-api", _to_api(browser, api), awaited=True)
    to_browser = tasks.spawn("to-browser", _to_browser(runtime, api, browser), awaited=True)
    try:
        await asyncio.wait([to_api, to_browser], return_when=asyncio.FIRST_COMPLETED)
    finally:
        await tasks.cancel_all()
    ended = to_browser.done() and not to_browser.cancelled() and to_browser.exception() is None
    reason = to_browser.result() if ended else ""
    code = api.close_code
    if code is not None and code not in UNSENDABLE_CLOSE:
        await browser.close(code=code, message=reason.encode()[:123])


async def _to_api(browser: web.WebSocketResponse, api: aiohttp.ClientWebSocketResponse) -> None:
    with contextlib.suppress(ConnectionResetError):  # the API went away: the relay ends
        async for message in browser:
            if message.type is WSMsgType.TEXT:
                await api.send_str(message.data)
            elif message.type is WSMsgType.BINARY:  # the API answers it with an error event
                await api.send_bytes(message.data)


async def _to_browser(
    runtime: Runtime, api: aiohttp.ClientWebSocketResponse, browser: web.WebSocketResponse
) -> str:
    """Relay the API's messages until it closes; the reason it gave for closing."""
    timings = StageTimings(runtime)
    with contextlib.suppress(ConnectionResetError):  # the browser went away: the relay ends
        while True:
            message = await api.receive()
            if message.type is WSMsgType.TEXT:
                await browser.send_str(message.data)
                extra = timings.after(message.data)
                if extra is not None:
                    await browser.send_str(json.dumps(extra))
            elif message.type is WSMsgType.BINARY:
                await browser.send_bytes(message.data)
            else:  # closed (a reason with it), closing, or failed
                return str(message.extra or "") if message.type is WSMsgType.CLOSE else ""
    return ""


class StageTimings:
    """Follows one session's events; after a ``response.done`` that the session recorded a
    spoken turn for, the turn's server-side stage timings as a ``console.turn_timings``."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.session_id = ""
        self.turns = 0

    def after(self, text: str) -> dict[str, Any] | None:
        if '"session.created"' not in text and '"response.done"' not in text:
            return None  # audio deltas and the rest: not parsed
        event = json.loads(text)
        if event.get("type") == "session.created":
            self.session_id = str(event.get("session", {}).get("id", ""))
            return None
        if event.get("type") != "response.done":
            return None
        session = self.runtime.sessions.get(self.session_id)
        summary = session.summary() if session is not None else {}
        turns = int(summary.get("turns") or 0)
        if turns <= self.turns or not summary.get("last_turn"):
            return None  # a typed or push-to-talk turn: the server timed no speech end
        self.turns = turns
        response = event.get("response", {}).get("id")
        return {"type": TIMINGS, "response_id": response, "turn": turns, **summary["last_turn"]}


async def _client(app: web.Application) -> AsyncIterator[None]:
    # The timeout bounds the handshake: the API accepts before it opens the session.
    handshake = aiohttp.ClientTimeout(total=CONNECT_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=handshake) as http:
        app[TALK] = Talk(http)
        yield


async def _close_sockets(app: web.Application) -> None:
    for socket in list(app[TALK].sockets):
        await socket.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"console shutting down")


def add_talk_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(_client)
    app.on_shutdown.append(_close_sockets)
    app.router.add_get(PATH, talk_socket, name="talk_socket")
