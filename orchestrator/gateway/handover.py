"""A Realtime session on the bridge while the host wakes, carried to the host between turns.

The bridge (``bridge.py``: an orchestrator server on CPU engines beside the gateway) answers a
session opened while the host is not up, so the student hears a voice in seconds. The passage
relays both ways as it would to the host, and a ``Conversation`` (``conversation.py``) reads
every message. Meanwhile the host is woken and the client still told ``waking``.

Once the host is ready, the session moves at the first turn boundary, never mid-reply:

1. at the boundary (checked after every message either way, and when the host becomes ready)
   the client's messages stop going to the bridge and are kept, as during a hold;
2. the host's session, opened as soon as the host was ready (its engines leased then, not in
   the gap), is sent the client's ``session.update`` messages and the conversation so far
   as ``conversation.item.create``; what it answers to them (``session.created``,
   ``session.updated``, ``conversation.item.created`` or GA ``...added``, errors) is the
   gateway's to read, never the client's: the client already heard this conversation;
3. the client's audio the bridge held uncommitted at the boundary (``Conversation.carry``:
   a push-to-talk turn not committed yet, or the latest second under server VAD) is sent to
   the host, so a word begun at the boundary is not lost;
4. the bridge's socket is closed, the client gets ``session.backend_changed`` (source
   ``bridge``, target ``host``, reason ``host_ready``, ``gap_s``: from the boundary to the
   host taking the client's messages; the duplex failover's event), then the messages kept
   since the boundary go to the host and the passage relays the host from there on.

Who failed is said: a bridge that cannot be reached or refuses the session leaves it held for
the host as if there were no bridge (``BridgeUnavailable``); a bridge's socket that ends before
the move ends the session as the host's would (``BridgeEnded``: never the host's fault); a host
that fails to start, or whose session cannot be opened, leaves the session on the bridge and is
tried again (a host that does not answer is reported lost: the controller looks at it).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from aiohttp import WSMessage, WSMsgType

from orchestrator.gateway.conversation import CARRY_BYTES, Conversation
from orchestrator.gateway.errors import HostStartFailed
from orchestrator.gateway.wire import server_event
from services.tasks import TaskSet

log = logging.getLogger(__name__)

SEED_TIMEOUT_S = 30.0  # the host answers each seeded event at once; this bounds a wedged one
SEED_ANSWERS = frozenset(
    {"session.updated", "conversation.item.created", "conversation.item.added", "error"}
)
HOST_RETRY_S = 5.0  # a host whose session could not be opened is tried again after this


class Way(Protocol):
    """What the hand-over needs of the client's passage (``passage.py``)."""

    def observe(self, observer: Handover | None) -> None: ...
    def host_failed(self, reason: str) -> None: ...
    def hold_messages(self) -> None: ...
    async def hold(self) -> str: ...
    async def connect(self, base: str) -> aiohttp.ClientWebSocketResponse: ...
    async def replay(self, to: aiohttp.ClientWebSocketResponse) -> None: ...
    async def to_client(self, message: WSMessage) -> None: ...
    async def to_client_text(self, text: str) -> None: ...


@dataclass(frozen=True)
class BridgeEnded:
    """The bridge's socket ended before the hand-over: its close frame, or None."""

    closing: WSMessage | None


@dataclass(frozen=True)
class BridgeUnavailable:
    """The bridge could not take the session (unreachable, or it refused it): nothing was sent
    to it, and the session is held for the host as without a bridge."""

    reason: str


class Handover:
    def __init__(self, passage: Way, bridge_url: str, *, carry_bytes: int = CARRY_BYTES) -> None:
        self.passage = passage
        self.bridge_url = bridge_url
        self.conversation = Conversation(carry_bytes=carry_bytes)
        self.host_url: str | None = None
        self.host: aiohttp.ClientWebSocketResponse | None = None  # opened before the boundary
        self.boundary_at: float | None = None  # when the move began (the client's pause)
        self.carried: list[str] = []  # the client's audio the bridge held at the boundary
        self._go = asyncio.Event()
        self._tasks = TaskSet("gateway-handover")

    async def run(self) -> aiohttp.ClientWebSocketResponse | BridgeEnded | BridgeUnavailable:
        """The host's socket, relaying the client's messages, once the session moved."""
        passage = self.passage
        passage.observe(self)
        try:
            bridge = await passage.connect(self.bridge_url)
        except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
            passage.observe(None)
            log.warning("the bridge did not take a session (%s: %s)", type(exc).__name__, exc)
            return BridgeUnavailable(f"{type(exc).__name__}: {exc}")
        try:
            try:
                await passage.replay(bridge)  # what came before the bridge answered, in order
            except (aiohttp.ClientError, ConnectionError) as exc:
                log.warning("the bridge's socket broke as it was opened: %s", exc)
                return BridgeEnded(None)
            relay = self._tasks.spawn("bridge", self._relay(bridge))
            self._tasks.spawn("host", self._await_host())
            go = self._tasks.spawn("go", self._go.wait())
            await asyncio.wait({relay, go}, return_when=asyncio.FIRST_COMPLETED)
            if not go.done():
                return BridgeEnded(relay.result())
            await self._tasks.cancel_all()
            return await self._move()
        finally:
            passage.observe(None)
            await self._tasks.cancel_all()
            if not bridge.closed:
                await bridge.close()

    def seen(self, message: WSMessage) -> None:
        self.conversation.from_client(message.data)

    def check(self) -> None:
        """Begin the move when the host is ready and the conversation is between turns: from
        this instant the client's messages are kept for the host."""
        if self.host is None or self._go.is_set() or not self.conversation.at_boundary:
            return
        self.passage.hold_messages()
        self.carried = self.conversation.carry()
        self.boundary_at = asyncio.get_running_loop().time()
        self._go.set()

    async def _relay(self, bridge: aiohttp.ClientWebSocketResponse) -> WSMessage | None:
        """The bridge's messages to the client, read on the way; its close frame, or None."""
        while True:
            message = await bridge.receive()
            if message.type is WSMsgType.CLOSE:
                return message
            if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                return None
            self.conversation.from_server(message.data)
            await self.passage.to_client(message)
            self.check()

    async def _await_host(self) -> None:
        """Wake the host (the client hears ``waking`` meanwhile) and open its session before
        the boundary: the host leases its engines then, not in the conversation's gap. A
        failed start, or a session the host did not open, leaves the session on the bridge
        and is tried again (the start when the gate allows)."""
        while True:
            try:
                self.host_url = await self.passage.hold()
            except HostStartFailed as exc:
                log.warning("host start failed under a bridged session: %s", exc)
                await asyncio.sleep(exc.retry_after_s or HOST_RETRY_S)
                continue
            try:
                self.host = await self._open_host(self.host_url)
            except aiohttp.WSServerHandshakeError as exc:  # an answer, not a lost host
                log.error("the host refused a bridged session's move (%s): tried again", exc.status)
            except (aiohttp.ClientError, ConnectionError, TimeoutError, ValueError) as exc:
                self.passage.host_failed(f"opening its session: {type(exc).__name__}: {exc}")
            else:
                break
            await asyncio.sleep(HOST_RETRY_S)
        self.check()

    async def _open_host(self, url: str) -> aiohttp.ClientWebSocketResponse:
        """The host's session, once it said ``session.created``; closed if it did not."""
        host = await self.passage.connect(url)
        try:
            async with asyncio.timeout(SEED_TIMEOUT_S):
                while True:  # its waking events and session.created are the gateway's to read
                    message = await host.receive()
                    if message.type is not WSMsgType.TEXT:
                        raise ConnectionError(
                            f"the host's socket ended at its start ({message.type})"
                        )
                    if json.loads(message.data).get("type") == "session.created":
                        return host
        except Exception:
            await host.close()
            raise

    async def _move(self) -> aiohttp.ClientWebSocketResponse:
        host, passage = self.host, self.passage
        assert host is not None and self.boundary_at is not None
        await self._seed(host)
        for raw in self.carried:  # the audio the bridge held, before what came since
            await host.send_str(raw)
        gap_s = asyncio.get_running_loop().time() - self.boundary_at
        changed = server_event(
            "session.backend_changed",
            source="bridge",
            target="host",
            reason="host_ready",
            gap_s=round(gap_s, 3),
        )
        await passage.to_client_text(json.dumps(changed))
        await passage.replay(host)
        log.info("realtime session moved from the bridge to the host in %.3f s", gap_s)
        return host

    async def _seed(self, host: aiohttp.ClientWebSocketResponse) -> None:
        """The conversation so far to the host, and its answers read here, not relayed."""
        messages = self.conversation.replay()
        for raw in messages:
            await host.send_str(raw)
        answered = 0
        async with asyncio.timeout(SEED_TIMEOUT_S):
            while answered < len(messages):
                message = await host.receive()
                if message.type is not WSMsgType.TEXT:
                    raise ConnectionError(f"the host's socket ended while seeded ({message.type})")
                event = json.loads(message.data)
                if event.get("type") == "error":
                    log.warning("the host refused a carried-over event: %s", event.get("error"))
                if event.get("type") in SEED_ANSWERS:
                    answered += 1
