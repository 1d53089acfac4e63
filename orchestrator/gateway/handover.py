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
   ``session.updated``, ``conversation.item.created``, errors) is the gateway's to read,
   never the client's: the client already heard this conversation;
3. the bridge's socket is closed, the client gets ``session.backend_changed`` (source
   ``bridge``, target ``host``, reason ``host_ready``, ``gap_s``: from the boundary to the
   host taking the client's messages; the duplex failover's event), then the kept messages go
   to the host and the passage relays the host from there on.

If the bridge's socket ends before that, the session ends as it would with the host's
(``BridgeEnded``); a host that fails to start leaves the session on the bridge.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from aiohttp import WSMessage, WSMsgType

from orchestrator.gateway.conversation import Conversation
from orchestrator.gateway.errors import HostStartFailed
from orchestrator.gateway.wire import server_event
from services.tasks import TaskSet

log = logging.getLogger(__name__)

SEED_TIMEOUT_S = 30.0  # the host answers each seeded event at once; this bounds a wedged one
SEED_ANSWERS = frozenset({"session.updated", "conversation.item.created", "error"})


class Way(Protocol):
    """What the hand-over needs of the client's passage (``passage.py``)."""

    def observe(self, observer: Handover | None) -> None: ...
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


class Handover:
    def __init__(self, passage: Way, bridge_url: str) -> None:
        self.passage = passage
        self.bridge_url = bridge_url
        self.conversation = Conversation()
        self.host_url: str | None = None
        self.host: aiohttp.ClientWebSocketResponse | None = None  # opened before the boundary
        self.boundary_at: float | None = None  # when the move began (the client's pause)
        self._go = asyncio.Event()
        self._tasks = TaskSet("gateway-handover")

    async def run(self) -> aiohttp.ClientWebSocketResponse | BridgeEnded:
        """The host's socket, relaying the client's messages, once the session moved."""
        passage = self.passage
        passage.observe(self)
        bridge = await passage.connect(self.bridge_url)
        try:
            await passage.replay(bridge)  # what came before the bridge answered, in order
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
        failed start leaves the session on the bridge and is tried again when the gate
        allows."""
        while True:
            try:
                self.host_url = await self.passage.hold()
            except HostStartFailed as exc:
                log.warning("host start failed under a bridged session: %s", exc)
                await asyncio.sleep(exc.retry_after_s or 5)
                continue
            break
        host = await self.passage.connect(self.host_url)
        async with asyncio.timeout(SEED_TIMEOUT_S):
            while True:  # its waking events and session.created are the gateway's to read
                message = await host.receive()
                if message.type is not WSMsgType.TEXT:
                    raise ConnectionError(f"the host's socket ended at its start ({message.type})")
                if json.loads(message.data).get("type") == "session.created":
                    break
        self.host = host
        self.check()

    async def _move(self) -> aiohttp.ClientWebSocketResponse:
        host, passage = self.host, self.passage
        assert host is not None and self.boundary_at is not None
        await self._seed(host)
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
