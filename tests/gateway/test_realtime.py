"""``/v1/realtime`` through the gateway: held while the host wakes, then the host's session.

The host is the real orchestrator API on the tiny cascade (Silero VAD, faster-whisper, a tiny
GPT-2, Piper), behind a cable the test can cut; speech comes from espeak-ng. The gate is
scripted: the test moves the host through its states and sees the sessions the gateway holds.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
import numpy as np
import pytest

from orchestrator.config import AppConfig
from orchestrator.config.secrets import Secrets
from orchestrator.gateway.errors import HostStartFailed
from orchestrator.gateway.keys import HTTP
from orchestrator.gateway.lifecycle import HostState
from orchestrator.gateway.realtime import MESSAGE_LIMIT
from tests.conftest import API_KEY, CONSOLE_PASSWORD
from tests.gateway.clients import AUTH
from tests.gateway.conftest import HOST_KEY, Stack, StackFactory
from tests.realtime_client import Socket
from tests.speech import silence, speak

RATE = 24_000


@pytest.fixture
def short_replies(cascade_config: AppConfig) -> AppConfig:
    """The cascade with short replies: these tests are about the way, not the words."""
    sessions = cascade_config.sessions.model_copy(
        update={"llm_options": {"max_new_tokens": 8, "min_new_tokens": 4}}
    )
    return cascade_config.model_copy(update={"sessions": sessions})


def spoken(text: str) -> list[str]:
    """``text`` spoken and a second of silence, as base64 PCM16 appends of 500 ms."""
    samples = np.concatenate([speak(text, RATE), silence(1.0, RATE)])
    pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes()
    step = RATE  # 500 ms of 16-bit samples
    return [base64.b64encode(pcm[i : i + step]).decode() for i in range(0, len(pcm), step)]


async def dial(stack: Stack, http: aiohttp.ClientSession, **options: Any) -> Socket:
    return Socket(await http.ws_connect(stack.url + "/v1/realtime", headers=AUTH, **options))


async def next_event(socket: Socket) -> dict[str, Any]:
    """The next server event, whatever it is (``Socket.until`` raises on errors)."""
    message = await socket.ws.receive(timeout=60)
    assert message.type is aiohttp.WSMsgType.TEXT, message
    event: dict[str, Any] = json.loads(message.data)
    socket.seen.append(event)
    return event


async def test_waking_while_the_host_boots_then_the_turn_sent_meanwhile_is_answered(
    make_stack: StackFactory, short_replies: AppConfig
) -> None:
    stack = await make_stack(short_replies, writer=True)
    gate = stack.gate
    async with aiohttp.ClientSession() as http:
        socket = await dial(stack, http)
        waking = await socket.until("waking")  # at once, before the host is asked
        assert waking["engines"] == ["host"]
        assert {"event_id", "state", "eta_s", "progress"} <= waking.keys()
        await gate.until(lambda: gate.waiting == 1)
        assert gate.open["session"] == 1  # the hold is part of the session
        await socket.send("session.update", session={"turn_detection": None})
        for chunk in spoken("Hello teacher, what is two plus two?"):
            await socket.send("input_audio_buffer.append", audio=chunk)
        await socket.send("input_audio_buffer.commit")
        await socket.send("response.create")
        gate.move(HostState.BOOTING)
        while (await socket.until("waking"))["state"] != "booting":
            pass  # a periodic one for "starting" may come first
        assert socket.seen[-1]["eta_s"] == 42.0 and socket.seen[-1]["progress"] == 0.25
        gate.become_ready()
        await socket.until("session.created")
        assert (await socket.until("session.updated"))["session"]["turn_detection"] is None
        await socket.until("input_audio_buffer.committed")
        done = await socket.until("response.done")  # the reply waits for the transcript
        assert done["response"]["status"] == "completed"
        kinds = socket.types()
        assert {
            "conversation.item.input_audio_transcription.completed",
            "response.created",
            "response.audio.delta",
        } <= set(kinds)
        assert "waking" not in kinds[kinds.index("session.created") :]
        assert len(stack.runtime.session_summaries()) == 1  # one session on the host
        await socket.ws.close()
    await gate.until(lambda: gate.open["session"] == 0)
    assert gate.uses == ["session"]


async def test_waking_repeats_and_a_client_that_leaves_ends_the_hold(
    make_stack: StackFactory, tiny_config: AppConfig
) -> None:
    stack = await make_stack(tiny_config, waking_interval_s=0.05)
    gate = stack.gate
    async with aiohttp.ClientSession() as http:
        socket = await dial(stack, http)
        states = [(await socket.until("waking"))["state"] for _ in range(4)]
        assert states[-1] == "starting"  # no transition since: told again all the same
        await socket.ws.close()
    await gate.until(lambda: gate.open["session"] == 0 and gate.waiting == 0)
    assert stack.runtime.session_summaries() == []  # the host never saw it


async def test_over_the_buffer_a_message_is_dropped_and_the_session_goes_on(
    make_stack: StackFactory, short_replies: AppConfig
) -> None:
    stack = await make_stack(short_replies, writer=True, realtime_buffer_bytes=600)
    async with aiohttp.ClientSession() as http:
        socket = await dial(stack, http)
        await socket.until("waking")
        await socket.say("first")
        await socket.say("x" * 1000)
        error = await socket.until("error")
        assert error["error"]["code"] == "buffer_full"
        assert error["error"]["type"] == "invalid_request_error"
        assert "600 bytes" in error["error"]["message"]
        await socket.say("third")
        stack.gate.become_ready()
        await socket.until("session.created")
        texts = []
        for _ in range(2):
            item = (await socket.until("conversation.item.created"))["item"]
            texts.append(item["content"][0]["text"])
        assert texts == ["first", "third"]
        await socket.ws.close()


@pytest.mark.parametrize("reset", [True, False], ids=["reset", "closed"])
async def test_a_host_that_dies_mid_session_is_host_lost_and_1011(
    make_stack: StackFactory, short_replies: AppConfig, reset: bool
) -> None:
    stack = await make_stack(short_replies, writer=True, ready=True)
    async with aiohttp.ClientSession() as http:
        socket = await dial(stack, http)
        await socket.until("session.created")
        stack.cable.cut(reset=reset)
        error = await socket.until("error")
        assert error["error"]["code"] == "host_lost"
        assert error["error"]["type"] == "server_error"
        closing = await socket.ws.receive(timeout=30)
        assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 1011
    assert len(stack.gate.lost) == 1 and "realtime session" in stack.gate.lost[0]
    await stack.gate.until(lambda: stack.gate.open["session"] == 0)


async def test_a_refusal_by_the_host_reaches_the_client_as_an_error_and_a_close(
    make_stack: StackFactory, short_replies: AppConfig
) -> None:
    """A host that does not know the gateway's key as a gateway's counts every session under
    it as one key's, and refuses past ``max_per_key`` with a 429 the client hears."""
    one_per_key = short_replies.sessions.model_copy(update={"max_per_key": 1})
    config = short_replies.model_copy(update={"sessions": one_per_key})
    stack = await make_stack(config, writer=True, ready=True)
    async with aiohttp.ClientSession() as http:
        first = await dial(stack, http)
        await first.until("session.created")
        second = await dial(stack, http)
        error = await second.until("error")
        assert error["error"]["code"] == "too_many_requests"
        assert "429" in error["error"]["message"]
        closing = await second.ws.receive(timeout=30)
        assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 1008
        await first.say("still here")  # the first session is untouched
        await first.until("conversation.item.created")
        await first.ws.close()
    assert stack.gate.lost == []  # a refusal is an answer, not a lost host


OTHER_KEY = "another-students-key-5151"


@pytest.mark.parametrize(
    ("host_secrets", "secrets"),
    [
        (
            Secrets((HOST_KEY,), CONSOLE_PASSWORD, gateway_keys=(HOST_KEY,)),
            Secrets((API_KEY, OTHER_KEY), CONSOLE_PASSWORD),
        )
    ],
)
async def test_a_host_that_knows_the_gateway_counts_sessions_per_client(
    make_stack: StackFactory, short_replies: AppConfig
) -> None:
    """With the gateway's key in the host's ``VO_GATEWAY_KEYS``, the host counts sessions per
    client the gateway names (``X-Voice-Client``): two students with one session each are
    both served at ``max_per_key = 1``, a student's second session is refused."""
    one_per_key = short_replies.sessions.model_copy(update={"max_per_key": 1})
    config = short_replies.model_copy(update={"sessions": one_per_key})
    stack = await make_stack(config, writer=True, ready=True)
    async with aiohttp.ClientSession() as http:
        first = await dial(stack, http)
        await first.until("session.created")
        other = Socket(
            await http.ws_connect(
                stack.url + "/v1/realtime", headers={"Authorization": f"Bearer {OTHER_KEY}"}
            )
        )
        await other.until("session.created")
        again = await dial(stack, http)
        error = await again.until("error")
        assert error["error"]["code"] == "too_many_requests"
        for socket in (first, other, again):
            await socket.ws.close()


async def test_a_failed_start_is_an_error_and_1013(
    make_stack: StackFactory, tiny_config: AppConfig
) -> None:
    stack = await make_stack(tiny_config)
    stack.gate.failure = HostStartFailed("quota exhausted", retry_after_s=120)
    async with aiohttp.ClientSession() as http:
        socket = await dial(stack, http)
        error = await socket.until("error")
        assert error["error"]["code"] == "host_start_failed"
        assert error["error"]["message"] == "quota exhausted"
        assert error["error"]["retry_after_s"] == 120
        closing = await socket.ws.receive(timeout=30)
        assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 1013


async def test_a_message_over_the_host_s_limit_is_refused_and_closed_1009(
    make_stack: StackFactory, tiny_config: AppConfig
) -> None:
    stack = await make_stack(tiny_config)
    async with aiohttp.ClientSession() as http:
        socket = await dial(stack, http)
        await socket.until("waking")
        await socket.send("input_audio_buffer.append", audio="A" * MESSAGE_LIMIT)
        error = await socket.until("error")
        assert error["error"]["code"] == "message_too_big"
        closing = await socket.ws.receive(timeout=30)
        assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 1009
        assert "over the limit" in closing.extra


async def test_a_browser_s_key_protocol_opens_it_and_stays_at_the_gateway(
    make_stack: StackFactory, short_replies: AppConfig
) -> None:
    stack = await make_stack(short_replies, writer=True, ready=True)
    async with aiohttp.ClientSession() as http:
        protocols = ("realtime", f"openai-insecure-api-key.{API_KEY}")
        ws = await http.ws_connect(stack.url + "/v1/realtime", protocols=protocols)
        assert ws.protocol == "realtime"
        socket = Socket(ws)
        await socket.until("session.created")  # the host took the gateway's key
        await ws.close()
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(
                stack.url + "/v1/realtime", protocols=("realtime", "openai-insecure-api-key.bad")
            )
        assert refused.value.status == 401


async def test_shutdown_closes_open_sessions_with_1001(
    make_stack: StackFactory, short_replies: AppConfig
) -> None:
    stack = await make_stack(short_replies, writer=True, ready=True)
    holding = await make_stack(short_replies)  # a second gateway whose host never comes
    async with aiohttp.ClientSession() as http:
        live = await dial(stack, http)
        await live.until("session.created")
        held = await dial(holding, http)
        await held.until("waking")
        session = stack.gateway.app[HTTP]
        for server, socket in ((stack.gateway, live), (holding.gateway, held)):
            await server.close()
            closing = await socket.ws.receive(timeout=30)
            assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 1001
    assert session.closed
    assert stack.gate.open["session"] == 0 and holding.gate.open["session"] == 0
