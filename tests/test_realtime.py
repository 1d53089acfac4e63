"""``/v1/realtime`` end to end: real speech in, a spoken reply out, barge-in and bad input.

Every engine is real and tiny (Silero VAD, faster-whisper, a GPT-2 via transformers, Piper);
speech comes from espeak-ng. Replies are noise: the tests check the protocol and the flow.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp
import numpy as np
import openai
import pytest
from aiohttp.test_utils import TestServer

from orchestrator.api.app import create_api_app
from orchestrator.app.runtime import Runtime
from orchestrator.config import AppConfig
from orchestrator.core.idle import IdleState
from tests.conftest import API_KEY, RuntimeFactory
from tests.helpers import sample, samples
from tests.realtime_client import connect
from tests.speech import silence, speak

RATE = 24_000


def pcm_chunks(samples: np.ndarray, ms: int = 100) -> list[str]:
    pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes()
    step = RATE * ms // 1000 * 2
    return [base64.b64encode(pcm[i : i + step]).decode() for i in range(0, len(pcm), step)]


def utterance(text: str) -> list[str]:
    return pcm_chunks(np.concatenate([speak(text, RATE), silence(1.0, RATE)]))


@pytest.fixture
async def runtime(cascade_runtime: Runtime) -> Runtime:
    return cascade_runtime


@pytest.fixture
async def server(runtime: Runtime, aiohttp_server: Any) -> TestServer:
    server: TestServer = await aiohttp_server(create_api_app(runtime))
    return server


async def test_a_spoken_turn_gets_a_spoken_reply(server: TestServer, runtime: Runtime) -> None:
    async with aiohttp.ClientSession() as http:
        socket = await connect(server, http)
        created = await socket.until("session.created")
        assert created["session"]["turn_detection"]["type"] == "server_vad"
        chunks = utterance("Hello teacher, what is two plus two?")
        for chunk in chunks[:16]:  # 1.6 s: the user is still speaking
            await socket.send("input_audio_buffer.append", audio=chunk)
        started = await socket.until("input_audio_buffer.speech_started")
        partial = await socket.until("conversation.item.input_audio_transcription.delta")
        assert isinstance(partial["delta"], str)
        for chunk in chunks[16:]:
            await socket.send("input_audio_buffer.append", audio=chunk)
        stopped = await socket.until("input_audio_buffer.speech_stopped")
        assert 0 <= started["audio_start_ms"] < stopped["audio_end_ms"]
        transcript = await socket.until("conversation.item.input_audio_transcription.completed")
        assert isinstance(transcript["transcript"], str)
        await socket.until("response.created")
        delta = await socket.until("response.audio.delta")
        assert len(base64.b64decode(delta["delta"])) % 2 == 0
        done = await socket.until("response.done")
        assert done["response"]["status"] == "completed"
        assert socket.types().index("response.audio_transcript.delta") < socket.types().index(
            "response.done"
        )
        (summary,) = runtime.session_summaries()
        assert summary["engines"] == {"asr": "asr", "llm": "llm", "tts": "tts"}
        assert summary["turns"] == 1
        last = summary["last_turn"]
        assert 0 < last["transcript_s"] <= last["first_token_s"] <= last["first_audio_s"]
        assert last["first_audio_s"] <= last["turn_total_s"]
        assert last["tts_first_byte_s"] >= 0
        metrics = await http.get(
            f"http://{server.host}:{server.port}/metrics",
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
        page = samples(await metrics.text())
        assert sample(page, "vo_sessions_open", protocol="realtime", backend="cascade") == 1
        # the first audio was sent after the engine made it, before the turn ended
        assert sample(page, "vo_time_to_first_audio_seconds_count") == 1
        first_sent = sample(page, "vo_time_to_first_audio_seconds_sum")
        assert first_sent is not None
        assert last["first_audio_s"] <= first_sent <= last["turn_total_s"]
        await socket.ws.close()
    messages = runtime.fleet  # the session is closed: its leases are gone
    assert all(s.leases == 0 for s in await messages.statuses())


async def test_text_turn_and_cancel(
    server: TestServer, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The LLM is held before its first token, so the cancel always lands mid-reply."""
    asked = asyncio.Event()

    async def held_chat(
        messages: list[dict[str, str]], *, options: dict[str, Any] | None = None
    ) -> AsyncGenerator[str, None]:
        asked.set()
        await asyncio.Event().wait()  # never answers: only the cancel ends this reply
        yield ""

    monkeypatch.setattr(runtime.fleet.engine("llm"), "chat", held_chat)
    async with aiohttp.ClientSession() as http:
        socket = await connect(server, http)
        await socket.until("session.created")
        await socket.say("Hi")
        await socket.until("conversation.item.created")
        await socket.send("response.create")
        await socket.until("response.created")
        async with asyncio.timeout(60):
            await asked.wait()
        await socket.send("response.cancel")
        done = await socket.until("response.done")
        assert done["response"]["status"] == "cancelled"
        await socket.ws.close()


async def test_barge_in_cancels_the_reply(
    cascade_config: AppConfig, make_runtime: RuntimeFactory, aiohttp_server: Any
) -> None:
    # a long reply, so that there is time to interrupt it
    long_replies = cascade_config.sessions.model_copy(
        update={"llm_options": {"max_new_tokens": 480, "min_new_tokens": 480}}
    )
    runtime = make_runtime(
        cascade_config.model_copy(update={"sessions": long_replies}), writer=True
    )
    server: TestServer = await aiohttp_server(create_api_app(runtime))
    async with aiohttp.ClientSession() as http:
        socket = await connect(server, http)
        await socket.until("session.created")
        await socket.say("Tell me a long story.")
        session_reply = socket.send("response.create")
        await session_reply
        await socket.until("response.audio.delta")
        for chunk in utterance("Wait, stop please."):
            await socket.send("input_audio_buffer.append", audio=chunk)
        await socket.until("input_audio_buffer.speech_started")
        done = await socket.until("response.done")
        assert done["response"]["status"] == "cancelled"
        after = socket.types()[socket.types().index("response.done") :]
        assert "response.audio.delta" not in after
        await socket.ws.close()


async def test_bad_input_gets_error_events_and_the_session_survives(server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        socket = await connect(server, http)
        await socket.until("session.created")
        await socket.ws.send_str("{not json")
        assert (await socket.until("error"))["error"]["code"] == "invalid_json"
        await socket.send("session.dance")
        assert (await socket.until("error"))["error"]["code"] == "unknown_event"
        await socket.send("input_audio_buffer.append", audio="%%%not-base64")
        assert (await socket.until("error"))["error"]["code"] == "invalid_input"
        await socket.send("input_audio_buffer.append", audio=base64.b64encode(b"abc").decode())
        assert "even number" in (await socket.until("error"))["error"]["message"]
        await socket.ws.send_bytes(b"\x00\x01")
        assert (await socket.until("error"))["error"]["code"] == "binary_frame"
        await socket.send(
            "conversation.item.truncate", item_id="nope", content_index=0, audio_end_ms=10
        )
        assert (await socket.until("error"))["error"]["code"] == "invalid_input"
        await socket.send("session.update", session={"instructions": "Be terse.", "voice": "x"})
        updated = await socket.until("session.updated")
        assert updated["session"]["instructions"] == "Be terse."
        await socket.ws.close()


async def test_no_key_no_socket(server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await http.ws_connect(f"http://{server.host}:{server.port}/v1/realtime")
        assert caught.value.status == 401


async def test_a_session_wakes_hibernated_engines(server: TestServer, runtime: Runtime) -> None:
    await runtime.hibernator.force(IdleState.COLD)
    async with aiohttp.ClientSession() as http:
        socket = await connect(server, http)
        await socket.until("session.created")
        woke = {name for e in socket.seen if e["type"] == "waking" for name in e["engines"]}
        assert woke == {"vad", "asr", "llm", "tts"}
        await runtime.hibernator.settled()
        assert runtime.hibernator.state is IdleState.ACTIVE
        assert runtime.hibernator.ladder.open_sessions
        page = runtime.metrics.render().decode()
        assert sample(page, "vo_hibernation_wake_seconds_count", source="cold") == 1
        await socket.ws.close()


async def test_the_openai_sdk_speaks_to_it(server: TestServer) -> None:
    client = openai.AsyncOpenAI(
        api_key=API_KEY,
        base_url=f"http://{server.host}:{server.port}/v1",
        websocket_base_url=f"ws://{server.host}:{server.port}/v1",
    )
    async with client.beta.realtime.connect(model="cascade") as connection:
        await connection.session.update(session={"instructions": "Be kind."})
        kinds = []
        async for event in connection:
            kinds.append(event.type)
            if event.type == "session.updated":
                assert event.session.instructions == "Be kind."
                break
        await connection.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Hello"}],
            }
        )
        await connection.response.create()
        async for event in connection:
            kinds.append(event.type)
            if event.type == "error":
                kinds.append(event.error.message)
            if event.type == "response.done":
                assert event.response.status == "completed", [k for k in kinds if "error" in k]
                break
    assert "session.created" in kinds and "response.audio.delta" in kinds


async def test_ga_event_names_when_the_client_speaks_ga(server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        socket = await connect(server, http)
        await socket.until("session.created")
        await socket.send("session.update", session={"type": "realtime", "instructions": "Hi"})
        assert (await socket.until("session.updated"))["session"]["type"] == "realtime"
        await socket.say("Hello")
        await socket.until("conversation.item.added")
        await socket.send("response.create")
        await socket.until("response.output_audio.delta")
        await socket.until("response.done")
        assert "response.audio.delta" not in socket.types()
        await socket.ws.close()


async def test_a_broken_first_voice_falls_back_for_the_whole_session(
    cascade_config_file: Any,
    tiny_piper_onnx: Any,
    make_runtime: RuntimeFactory,
    aiohttp_server: Any,
    tmp_path: Any,
) -> None:
    broken = tmp_path / "voice.onnx"
    broken.write_bytes(b"not a voice")
    broken.with_name("voice.onnx.json").write_text(
        tiny_piper_onnx.with_name(tiny_piper_onnx.name + ".json").read_text()
    )
    text = (
        cascade_config_file.read_text()
        + f"""
[engines.tts_first]
role = "tts"
adapter = "piper"
model = "{broken}"
preload = false
"""
    )
    text += '\n[sessions]\ntts = "tts_first"\nfallbacks = { tts = ["tts"] }\n'
    cascade_config_file.write_text(text)
    from orchestrator.config import load_config

    runtime = make_runtime(load_config(config_file=cascade_config_file, environ={}), writer=True)
    server: TestServer = await aiohttp_server(create_api_app(runtime))
    async with aiohttp.ClientSession() as http:
        socket = await connect(server, http)
        switch = await socket.until("fallback")
        assert (switch["role"], switch["source"], switch["target"]) == (
            "tts",
            "tts_first",
            "tts",
        )
        assert "load failed" in switch["reason"]
        await socket.until("session.created")
        await socket.say("Hello")
        await socket.send("response.create")
        await socket.until("response.audio.delta")  # the fallback voice speaks
        done = await socket.until("response.done")
        assert done["response"]["status"] == "completed"
        await socket.ws.close()
    metrics = runtime.metrics.render().decode()
    assert 'vo_fallback_switches_total{role="tts",source="tts_first",target="tts"} 1.0' in metrics
