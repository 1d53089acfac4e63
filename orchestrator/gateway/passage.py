"""One client WebSocket and its way to the host: hold, connect, replay, relay.

Two sides run at once. The client side (the handler itself) reads the client's messages for
the whole session: while the host is not connected they are kept in order, up to
``realtime_buffer_bytes`` (beyond, the message is dropped and the client told, the session
goes on); once it is, each goes straight to the host. The host side (a task) waits for the
host, telling the client through its ``Dialect`` now, every ``waking_interval_s`` and on each
host transition; then opens the host's socket on the same path and query with the host key,
replays what was kept, and relays the host's messages (text and binary) until either side
closes. The replay ends, and the client side starts sending, at the one instant the buffer is
found empty, so the host sees the client's messages in the order they were sent.

With a bridge (``[gateway.bridge]``: CPU engines beside the gateway) ready and the host not up,
a Realtime session is relayed to the bridge instead of held, and handed to the host between
two turns once it is ready (``handover.py``); the hand-over sees each client message before
it is routed (``seen``) and looks for the boundary after (``check``). A bridge that does not
take the session leaves it held for the host; one that fails under it ends it as
``bridge_lost``, never blaming the host.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from contextlib import suppress

import aiohttp
from aiohttp import WSCloseCode, WSMessage, WSMsgType, web

from orchestrator.api.errors import WireError
from orchestrator.core.events import Subscription
from orchestrator.gateway.errors import HostLost, HostStartFailed, HostWaking
from orchestrator.gateway.handover import BridgeEnded, BridgeUnavailable, Handover
from orchestrator.gateway.keys import BRIDGE, CONFIG, GATE, HTTP, SOCKETS
from orchestrator.gateway.lifecycle import UP
from orchestrator.gateway.sockets import Dialect, accept, refusal, sendable
from orchestrator.gateway.upstream import HEARTBEAT_S, WS_CLOSE_S, ws_headers, ws_protocols, ws_url
from services.errors import VoiceOrchestratorError
from services.tasks import TaskSet

log = logging.getLogger(__name__)

UP_STATES = frozenset(state.value for state in UP)
DATA = (WSMsgType.TEXT, WSMsgType.BINARY)


async def serve(request: web.Request, dialect: Dialect) -> web.WebSocketResponse:
    """One client session, from the upgrade to the last close, inside ``gate.use("session")``."""
    ws = accept(request, dialect)
    with request.app[GATE].use("session"):
        await ws.prepare(request)
        request.app[SOCKETS].add(ws)
        await Passage(request, ws, dialect).run()
    return ws


def _size(message: WSMessage) -> int:
    data = message.data
    return len(data.encode()) if isinstance(data, str) else len(data)


class Passage:
    def __init__(self, request: web.Request, ws: web.WebSocketResponse, dialect: Dialect) -> None:
        self.request = request
        self.ws = ws
        self.dialect = dialect
        self.gate = request.app[GATE]
        self.config = request.app[CONFIG]
        self.kept: deque[WSMessage] = deque()
        self.kept_bytes = 0
        self.host: aiohttp.ClientWebSocketResponse | None = None  # set once the replay is done
        self._opened: aiohttp.ClientWebSocketResponse | None = None  # the latest socket opened
        self._observer: Handover | None = None
        self._client_left = False
        self._closing_client = False  # the host side is closing the client's socket
        self._tasks = TaskSet(f"gateway-{dialect.name}")

    async def run(self) -> None:
        """The client side; returns when both sides are closed."""
        host_side = self._tasks.spawn("host", self._host_side())
        try:
            async for message in self.ws:
                if message.type in DATA:
                    await self._from_client(message)
        finally:
            if self._closing_client:  # let it finish the close it started
                await asyncio.wait({host_side}, timeout=WS_CLOSE_S)
            self._client_left = True
            await self._tasks.cancel_all()
            await self._close_host(self.ws.close_code)

    async def _from_client(self, message: WSMessage) -> None:
        size = _size(message)
        if size > self.dialect.message_limit:
            reason = f"message of {size} bytes is over the limit of {self.dialect.message_limit}"
            await self._tell(WireError(400, "message_too_big", reason))
            await self.ws.close(code=WSCloseCode.MESSAGE_TOO_BIG, message=reason.encode()[:123])
            return
        observer = self._observer
        if observer is not None:
            observer.seen(message)
        if self.host is None:
            await self._keep(message, size)
        else:
            with suppress(ConnectionError):  # the host side sees the host go and says so
                await _send(self.host, message)
        if observer is not None:
            observer.check()

    async def _keep(self, message: WSMessage, size: int) -> None:
        bound = self.config.realtime_buffer_bytes
        if self.kept_bytes + size > bound:
            wire = WireError(
                400,
                "buffer_full",
                f"the gateway keeps at most {bound} bytes of messages while the host wakes; "
                f"this message of {size} bytes was dropped",
            )
            await self._tell(wire)
            return
        self.kept.append(message)
        self.kept_bytes += size

    async def _host_side(self) -> None:
        """Hold, connect, replay, relay; then close the client's socket, saying why."""
        try:
            bridge = self._bridge_url()
            moved: aiohttp.ClientWebSocketResponse | BridgeEnded | BridgeUnavailable | None = None
            if bridge is not None:
                carry_bytes = self.config.realtime_buffer_bytes
                moved = await Handover(self, bridge, carry_bytes=carry_bytes).run()
            if isinstance(moved, BridgeEnded):
                await self._bridge_ended(moved.closing)
                return
            if isinstance(moved, aiohttp.ClientWebSocketResponse):
                host = moved
            else:  # no bridge, or it did not take the session: held for the host
                host = await self.connect(await self.hold())
                await self.replay(host)
            closing = await self._relay(host)
        except HostStartFailed as exc:
            await self._end(exc, WSCloseCode.TRY_AGAIN_LATER, "host start failed; try again later")
            return
        except aiohttp.WSServerHandshakeError as exc:  # an answer, not a lost host
            wire, code = refusal(exc.status)
            if exc.status in (401, 403):
                log.error("the host refused the gateway's key on %s", self.request.path)
            await self._end(wire, code, wire.message)
            return
        except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
            await self._lost(f"{type(exc).__name__}: {exc}")
            return
        except VoiceOrchestratorError as exc:  # the gate's own failure (a provider error)
            await self._end(exc, WSCloseCode.INTERNAL_ERROR, exc.code)
            return
        except Exception as exc:  # a bug: the client is told, never left on a dead socket
            log.exception("%s session on the gateway failed", self.dialect.name)
            await self._end(exc, WSCloseCode.INTERNAL_ERROR, "internal error")
            return
        if self._client_left:
            return
        if closing is None:
            await self._lost("the host's socket ended without a close frame")
            return
        code = sendable(closing.data, WSCloseCode.OK)
        if code == WSCloseCode.GOING_AWAY:  # the host's server is shutting down: look at it
            self.gate.host_lost(f"the host closed a {self.dialect.name} session with 1001")
        await self._close_client(code, closing.extra or "")

    def _bridge_url(self) -> str | None:
        """The bridge's URL when this session is to start there: a Realtime session, the host
        not up, and a bridge ready."""
        bridge = self.request.app.get(BRIDGE)
        if bridge is None or self.dialect.name != "realtime":
            return None
        if self.gate.snapshot().state.value in UP_STATES:
            return None
        return bridge.url()

    async def _bridge_ended(self, closing: WSMessage | None) -> None:
        if self._client_left:
            return
        if closing is None:
            log.warning("the bridge's socket ended without a close frame on %s", self.request.path)
            wire = WireError(502, "bridge_lost", "the gateway's bridge went away; reconnect")
            await self._end(wire, WSCloseCode.INTERNAL_ERROR, "bridge lost")
            return
        await self._close_client(sendable(closing.data, WSCloseCode.OK), closing.extra or "")

    # -- what the hand-over uses -----------------------------------------------------------------

    def observe(self, observer: Handover | None) -> None:
        """``observer`` sees every client message from now on, and those kept so far."""
        self._observer = observer
        if observer is not None:
            for message in self.kept:
                observer.seen(message)

    def host_failed(self, reason: str) -> None:
        """The host failed a bridged session's move: the session stays on the bridge."""
        detail = f"{self.dialect.name} session on {self.request.path}: {reason}"
        log.warning("host lost under a bridged session: %s", detail)
        self.gate.host_lost(detail)

    def hold_messages(self) -> None:
        """From now on the client's messages are kept (until ``replay``)."""
        self.host = None

    async def to_client(self, message: WSMessage) -> None:
        if not self.ws.closed:
            with suppress(ConnectionError):
                await _send(self.ws, message)

    async def to_client_text(self, text: str) -> None:
        if not self.ws.closed:
            with suppress(ConnectionError):
                await self.ws.send_str(text)

    async def hold(self) -> str:
        """The host's URL once it is ready, telling the client meanwhile (nothing is told
        when it is up: its URL comes at once)."""
        announcer = self._tasks.spawn("waking", self._announce())
        try:
            while True:
                try:
                    return await self.gate.ready_url(self.config.hold_s)
                except HostWaking:
                    continue  # still waking: the announcer keeps the client told
        finally:
            announcer.cancel()

    async def _announce(self) -> None:
        with self.gate.subscribe() as subscription:
            while True:
                snapshot = self.gate.snapshot().to_json()
                if snapshot["state"] not in UP_STATES:
                    try:
                        await self.dialect.waking(self.ws, snapshot)
                    except ConnectionError:
                        return  # the client is gone; its side ends the session
                await self._next_move(subscription)

    async def _next_move(self, subscription: Subscription) -> None:
        """Return on the next host transition, or after ``waking_interval_s`` without one."""
        with suppress(TimeoutError):
            async with asyncio.timeout(self.config.waking_interval_s):
                while (await subscription.queue.get()).type != "host":
                    pass

    async def connect(self, base: str) -> aiohttp.ClientWebSocketResponse:
        """A socket to ``base`` (the host, or the bridge) on the client's path, with the host
        key; closed with the client's code if the client leaves first."""
        self._opened = await self.request.app[HTTP].ws_connect(
            ws_url(base, self.request.raw_path),
            headers=ws_headers(self.request, self.gate.host_key),
            protocols=ws_protocols(self.request),
            heartbeat=HEARTBEAT_S,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=WS_CLOSE_S),
            max_msg_size=0,  # the host is trusted; its messages are the client's to get
        )
        return self._opened

    async def replay(self, to: aiohttp.ClientWebSocketResponse) -> None:
        while self.kept:
            message = self.kept.popleft()
            self.kept_bytes -= _size(message)
            await _send(to, message)
        self.host = to  # no await since the buffer was found empty: the order holds

    async def _relay(self, host: aiohttp.ClientWebSocketResponse) -> WSMessage | None:
        """The host's messages to the client; the host's close frame when it sent one,
        ``None`` when its connection ended without one."""
        while True:
            message = await host.receive()
            if message.type is WSMsgType.CLOSE:
                return message
            if message.type not in DATA:  # CLOSED, CLOSING, ERROR: no close frame came
                return None
            if self.ws.closed:
                continue  # the client is going: its side closes the host's socket
            try:
                await _send(self.ws, message)
            except ConnectionError:
                continue

    async def _lost(self, reason: str) -> None:
        if self._client_left:
            return
        detail = f"{self.dialect.name} session on {self.request.path}: {reason}"
        log.warning("host lost under a session: %s", detail)
        self.gate.host_lost(detail)
        await self._end(
            HostLost("the GPU host went away during the session; reconnect"),
            WSCloseCode.INTERNAL_ERROR,
            "host lost",
        )

    async def _end(self, error: BaseException | WireError, code: int, reason: str) -> None:
        await self._tell(error)
        await self._close_client(code, reason)

    async def _close_client(self, code: int, reason: str) -> None:
        self._closing_client = True
        await self.ws.close(code=code, message=reason.encode()[:123])

    async def _tell(self, error: BaseException | WireError) -> None:
        with suppress(ConnectionError):  # the client is gone: nobody to tell
            await self.dialect.refused(self.ws, error)

    async def _close_host(self, client_code: int | None) -> None:
        """The client left: close the host's socket with the client's code."""
        host = self._opened
        if host is None or host.closed:
            return
        code = sendable(client_code, WSCloseCode.GOING_AWAY)
        try:
            await host.close(code=code)
        except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
            log.debug("closing the host's socket: %s", exc)


async def _send(
    to: web.WebSocketResponse | aiohttp.ClientWebSocketResponse, message: WSMessage
) -> None:
    if message.type is WSMsgType.TEXT:
        await to.send_str(message.data)
    else:
        await to.send_bytes(message.data)
