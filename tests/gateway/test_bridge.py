"""The bridge: CPU engines beside the gateway answer while the host wakes, then hand over.

Both the bridge and the host are the real orchestrator API on the tiny cascade (two runtimes,
each with its own engines); the gate is scripted, so the test says when the host is ready.
The bridge is reached through a cable the test can cut (what a bridge that dies looks like).
Each runtime's LLM and ASR are recorded, so the test sees who answered each turn, with what
history, and how much of the student's audio each one transcribed.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestServer

from orchestrator.api.app import create_api_app
from orchestrator.api.realtime.connection import HANDLERS, RealtimeConnection
from orchestrator.api.realtime.events import ConversationItemCreate
from orchestrator.app.runtime import Runtime
from orchestrator.config import AppConfig
from orchestrator.config.secrets import Secrets
from orchestrator.gateway.keys import BRIDGE
from orchestrator.gateway.lifecycle import HostState
from tests.conftest import RuntimeFactory, free_port
from tests.gateway.cable import Cable
from tests.gateway.clients import AUTH
from tests.gateway.conftest import Stack, StackFactory
from tests.gateway.test_realtime import dial, spoken
from tests.gateway.test_streaming import hold_chat
from tests.realtime_client import Socket

TUTOR = "You are a patient maths tutor."
Asked = list[list[dict[str, str]]]


@dataclass
class FixedBridge:
    """A ``Bridge`` at a fixed URL, ready while ``ready``; ``cable`` is the way to it."""

    address: str
    after_s: float = 0.2
    ready: bool = True
    cable: Cable | None = None

    def url(self) -> str | None:
        return self.address if self.ready else None


def fixed_bridge(stack: Stack) -> FixedBridge:
    bridge = stack.gateway.app[BRIDGE]
    assert isinstance(bridge, FixedBridge)
    return bridge


def record_llm(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Asked:
    """Every message list ``runtime``'s LLM is asked with."""
    llm = runtime.fleet.engine("llm")
    chat, asked = llm.chat, []

    def recording_chat(messages: list[dict[str, str]], **options: Any) -> Any:
        asked.append([dict(m) for m in messages])
        return chat(messages, **options)

    monkeypatch.setattr(llm, "chat", recording_chat)
    return asked


def record_asr(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The length in seconds of every utterance ``runtime``'s ASR transcribes."""
    asr = runtime.fleet.engine("asr")
    transcribe, heard = asr.transcribe, []

    def recording(audio: np.ndarray, **options: Any) -> Any:
        heard.append(len(audio) / 16_000)  # the ASR contract: mono 16 kHz
        return transcribe(audio, **options)

    monkeypatch.setattr(asr, "transcribe", recording)
    return heard


def seconds(chunks: list[str]) -> float:
    """How much PCM16 24 kHz audio base64 ``chunks`` hold."""
    return sum(len(base64.b64decode(c)) for c in chunks) / 48_000


def hold_seeding(host: Runtime, monkeypatch: pytest.MonkeyPatch) -> tuple[asyncio.Event, ...]:
    """The host's session holds the assistant message the gateway seeds it with (only a seed
    creates one here) until ``release``: the switch stays open while the test speaks."""
    seeding, release = asyncio.Event(), asyncio.Event()
    create = HANDLERS[ConversationItemCreate.TYPE]

    async def held(connection: RealtimeConnection, event: ConversationItemCreate) -> None:
        if event.role == "assistant" and connection.runtime is host:
            seeding.set()
            await release.wait()
        await create(connection, event)

    monkeypatch.setitem(HANDLERS, ConversationItemCreate.TYPE, held)
    return seeding, release


async def first_turn_on_the_bridge(socket: Socket, **session: Any) -> dict[str, Any]:
    """A push-to-talk session with one typed turn answered by the bridge; its response.done."""
    await socket.send("session.update", session={"turn_detection": None, **session})
    await socket.until("session.updated")
    await socket.say("My name is Ada and I like fractions.")
    await socket.send("response.create")
    return await socket.until("response.done")


async def send_audio(socket: Socket, chunks: list[str]) -> None:
    for chunk in chunks:
        await socket.send("input_audio_buffer.append", audio=chunk)


BridgedStack = Callable[..., Awaitable[tuple[Stack, Runtime]]]


@pytest.fixture
async def bridged(
    make_stack: StackFactory,
    make_runtime: RuntimeFactory,
    aiohttp_server: Any,
    host_secrets: Secrets,
    short_replies: AppConfig,
) -> AsyncIterator[BridgedStack]:
    cables: list[Cable] = []

    async def make(**settings: Any) -> tuple[Stack, Runtime]:
        runtime = make_runtime(short_replies, secrets=host_secrets, writer=True)
        server: TestServer = await aiohttp_server(create_api_app(runtime))
        cable = await Cable(server.host, server.port).start()
        cables.append(cable)
        bridge = FixedBridge(cable.url, cable=cable)
        stack = await make_stack(short_replies, writer=True, bridge=bridge, **settings)
        return stack, runtime

    yield make
    for cable in cables:
        await cable.close()


@pytest.fixture
def short_replies(cascade_config: AppConfig) -> AppConfig:
    sessions = cascade_config.sessions.model_copy(
        update={"llm_options": {"max_new_tokens": 8, "min_new_tokens": 4}}
    )
    return cascade_config.model_copy(update={"sessions": sessions})


async def test_a_session_on_the_bridge_moves_to_the_host_between_turns_with_its_history(
    bridged: BridgedStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, bridge_runtime = await bridged()
    on_bridge = record_llm(bridge_runtime, monkeypatch)
    on_host = record_llm(stack.runtime, monkeypatch)
    async with aiohttp.ClientSession() as http:
        socket = await dial(stack, http)
        await socket.until("session.created")  # the bridge's: no hold
        await socket.send("session.update", session={"turn_detection": None, "instructions": TUTOR})
        await socket.until("session.updated")
        await socket.say("My name is Ada and I like fractions.")
        await socket.send("response.create")
        first = await socket.until("response.done")
        assert first["response"]["status"] == "completed"
        assert len(on_bridge) == 1 and not on_host
        said = first["response"]["output"][0]["content"][0]["transcript"]

        stack.gate.become_ready()
        changed = await socket.until("session.backend_changed")
        assert (changed["source"], changed["target"], changed["reason"]) == (
            "bridge",
            "host",
            "host_ready",
        )
        assert changed["gap_s"] >= 0
        await socket.say("What is my name?")
        await socket.send("response.create")
        second = await socket.until("response.done")
        assert second["response"]["status"] == "completed"

        assert len(on_bridge) == 1  # the second turn never reached the bridge
        ((system, *earlier, last),) = on_host
        assert system == {"role": "system", "content": TUTOR}
        assert earlier == [
            {"role": "user", "content": "My name is Ada and I like fractions."},
            {"role": "assistant", "content": said},
        ]
        assert last == {"role": "user", "content": "What is my name?"}
        kinds = socket.types()
        assert kinds.count("session.backend_changed") == 1
        assert kinds.count("session.created") == 1  # the host's was the gateway's to read
        assert kinds.count("session.updated") == 1
        assert kinds.count("response.created") == kinds.count("response.done") == 2
        assert "error" not in kinds
        await socket.ws.close()


async def test_the_move_waits_for_the_reply_in_progress(
    bridged: BridgedStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host becomes ready while the bridge is replying: the reply ends on the bridge,
    then the session moves."""
    stack, _bridge_runtime = await bridged()
    on_host = record_llm(stack.runtime, monkeypatch)
    async with aiohttp.ClientSession() as http:
        socket = await dial(stack, http)
        await socket.send("session.update", session={"turn_detection": None})
        await socket.say("Tell me about triangles.")
        await socket.send("response.create")
        await socket.until("response.created")
        stack.gate.become_ready()
        done = await socket.until("response.done")
        assert done["response"]["status"] == "completed"  # not cut by the move
        await socket.until("session.backend_changed")
        kinds = socket.types()
        assert kinds.index("session.backend_changed") > kinds.index("response.done")
        assert not on_host
        await socket.ws.close()


async def test_rest_during_a_wake_is_served_by_the_bridge_after_bridge_after_s(
    bridged: BridgedStack,
) -> None:
    stack, _bridge_runtime = await bridged()
    async with aiohttp.ClientSession() as http:
        async with http.get(stack.url + "/v1/models", headers=AUTH) as reply:
            assert reply.status == 200
            assert reply.headers["X-Voice-Waking"].split(",")[0] == "host"
            assert reply.headers["X-Voice-Bridge"] == "1"
            assert (await reply.json())["data"]
        assert stack.gate.state is HostState.STARTING  # the host was woken all the same
        assert stack.gate.uses == ["request"]
        stack.gate.become_ready()
        async with http.get(stack.url + "/v1/models", headers=AUTH) as reply:
            assert reply.status == 200
            assert "X-Voice-Bridge" not in reply.headers
            assert "X-Voice-Waking" not in reply.headers


async def test_a_bridge_not_ready_leaves_the_session_held_for_the_host(
    bridged: BridgedStack,
) -> None:
    stack, _bridge_runtime = await bridged()
    fixed_bridge(stack).ready = False
    async with aiohttp.ClientSession() as http:
        socket = await dial(stack, http)
        await socket.until("waking")
        await stack.gate.until(lambda: stack.gate.waiting == 1)
        stack.gate.become_ready()
        await socket.until("session.created")
        assert "session.backend_changed" not in socket.types()
        await socket.ws.close()


async def test_audio_sent_while_the_session_moves_reaches_the_host(
    bridged: BridgedStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A turn spoken in the switch (after the boundary, before the host took the client's
    messages) is kept by the gateway and given to the host whole."""
    stack, bridge_runtime = await bridged()
    seeding, release = hold_seeding(stack.runtime, monkeypatch)
    on_bridge, on_host = (
        record_asr(bridge_runtime, monkeypatch),
        record_asr(stack.runtime, monkeypatch),
    )
    chunks = spoken("Seven times eight.")
    async with aiohttp.ClientSession() as http:
        socket = await dial(stack, http)
        await first_turn_on_the_bridge(socket)
        stack.gate.become_ready()
        async with asyncio.timeout(60):
            await seeding.wait()  # the switch is open: the host is being seeded
        await send_audio(socket, chunks)
        await socket.send("input_audio_buffer.commit")
        await socket.send("response.create")
        release.set()
        await socket.until("session.backend_changed")
        await socket.until("input_audio_buffer.committed")
        assert (await socket.until("response.done"))["response"]["status"] == "completed"
        await socket.ws.close()
    assert on_bridge == []
    (heard,) = on_host
    assert heard == pytest.approx(seconds(chunks), abs=0.05)  # every append, once


async def test_a_push_to_talk_turn_not_committed_moves_with_its_audio(
    bridged: BridgedStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The student is holding the button when the host becomes ready: the move does not wait
    for the commit, and what the bridge held of the turn is given to the host."""
    stack, bridge_runtime = await bridged()
    on_bridge, on_host = (
        record_asr(bridge_runtime, monkeypatch),
        record_asr(stack.runtime, monkeypatch),
    )
    chunks = spoken("Seven times eight.")
    half = len(chunks) // 2
    async with aiohttp.ClientSession() as http:
        socket = await dial(stack, http)
        await first_turn_on_the_bridge(socket)
        await send_audio(socket, chunks[:half])
        stack.gate.become_ready()
        await socket.until("session.backend_changed", timeout=30)
        await send_audio(socket, chunks[half:])
        await socket.send("input_audio_buffer.commit")
        await socket.send("response.create")
        await socket.until("input_audio_buffer.committed")
        assert (await socket.until("response.done"))["response"]["status"] == "completed"
        await socket.ws.close()
    assert on_bridge == []
    (heard,) = on_host
    assert heard == pytest.approx(seconds(chunks), abs=0.05)


async def test_a_ga_session_moves_to_the_host_with_its_history(
    bridged: BridgedStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GA client gets ``conversation.item.added``; the host, seeded in GA, answers so too."""
    stack, _bridge_runtime = await bridged()
    on_host = record_llm(stack.runtime, monkeypatch)
    async with aiohttp.ClientSession() as http:
        socket = await dial(stack, http)
        ga = {
            "type": "realtime",
            "instructions": TUTOR,
            "audio": {"input": {"turn_detection": None}},
        }
        await socket.send("session.update", session=ga)
        await socket.until("session.updated")
        await socket.say("My name is Ada.")
        await socket.send("response.create")
        first = await socket.until("response.done")
        said = first["response"]["output"][0]["content"][0]["transcript"]
        stack.gate.become_ready()
        await socket.until("session.backend_changed", timeout=30)
        await socket.say("What is my name?")
        await socket.until("conversation.item.added")
        await socket.send("response.create")
        assert (await socket.until("response.done"))["response"]["status"] == "completed"
        await socket.ws.close()
    ((system, *earlier, last),) = on_host
    assert system == {"role": "system", "content": TUTOR}
    assert earlier == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": said},
    ]
    assert last == {"role": "user", "content": "What is my name?"}


async def test_a_bridge_that_cannot_be_reached_leaves_the_session_held_not_the_host_lost(
    bridged: BridgedStack,
) -> None:
    stack, _bridge_runtime = await bridged()
    fixed_bridge(stack).address = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with aiohttp.ClientSession() as http:
        socket = await dial(stack, http)
        await socket.until("waking")
        await stack.gate.until(lambda: stack.gate.waiting == 1)
        stack.gate.become_ready()
        await socket.until("session.created")  # the host's
        await socket.say("Hello.")
        await socket.until("conversation.item.created")
        await socket.ws.close()
    assert stack.gate.lost == []
    assert "session.backend_changed" not in socket.types()


async def test_a_bridge_that_dies_under_a_session_is_bridge_lost_not_the_host(
    bridged: BridgedStack,
) -> None:
    stack, _bridge_runtime = await bridged()
    async with aiohttp.ClientSession() as http:
        socket = await dial(stack, http)
        await first_turn_on_the_bridge(socket)
        cable = fixed_bridge(stack).cable
        assert cable is not None
        cable.cut()
        error = await socket.until("error")
        assert error["error"]["code"] == "bridge_lost"
        closing = await socket.ws.receive(timeout=30)
        assert closing.type is aiohttp.WSMsgType.CLOSE
    await stack.gate.until(lambda: stack.gate.open["session"] == 0)
    assert stack.gate.lost == []


async def test_a_bridged_stream_that_breaks_off_is_cut_without_blaming_the_host(
    bridged: BridgedStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, bridge_runtime = await bridged()
    release = hold_chat(bridge_runtime, monkeypatch)
    body = {"model": "llm", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(stack.url + "/v1/chat/completions", json=body, headers=AUTH) as response,
        ):
            assert response.status == 200 and response.headers["X-Voice-Bridge"] == "1"
            async with asyncio.timeout(60):
                while b'"Two"' not in await response.content.readline():
                    pass
            cable = fixed_bridge(stack).cable
            assert cable is not None
            cable.cut()
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.content.read()  # never a clean end of a cut reply
            assert stack.gate.lost == []  # the gateway cut the client after it judged
    finally:
        release.set()
    await stack.gate.until(lambda: stack.gate.open["request"] == 0)
    assert stack.gate.lost == []


async def test_a_rest_request_the_bridge_cannot_take_waits_for_the_host(
    bridged: BridgedStack,
) -> None:
    stack, _bridge_runtime = await bridged()
    fixed_bridge(stack).address = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    gate = stack.gate
    async with aiohttp.ClientSession() as http:
        asked = asyncio.ensure_future(http.get(stack.url + "/v1/models", headers=AUTH))
        await gate.until(lambda: gate.ready_calls == 2 and gate.waiting == 1)  # after the bridge
        gate.become_ready()
        async with await asked as reply:
            assert reply.status == 200
            assert "X-Voice-Bridge" not in reply.headers
            assert reply.headers["X-Voice-Waking"].split(",")[0] == "host"
    assert gate.lost == []


async def test_a_host_whose_session_cannot_be_opened_is_reported_and_the_bridge_goes_on(
    bridged: BridgedStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, bridge_runtime = await bridged()
    on_bridge = record_llm(bridge_runtime, monkeypatch)
    async with aiohttp.ClientSession() as http:
        socket = await dial(stack, http)
        await first_turn_on_the_bridge(socket)
        stack.cable.cut()  # the host is "ready" but cannot be reached
        stack.gate.become_ready()
        await stack.gate.until(lambda: len(stack.gate.lost) == 1)
        assert "opening its session" in stack.gate.lost[0]
        await socket.say("And what about halves?")
        await socket.send("response.create")
        assert (await socket.until("response.done"))["response"]["status"] == "completed"
        await socket.ws.close()
    assert len(on_bridge) == 2  # still the bridge's session
    assert "session.backend_changed" not in socket.types()
