"""OpenAI-compatible LLM, ASR and TTS adapters against tests/peers/openai_peer.py (whisper.cpp's
server and the VibeVoice wrapper have their own peers and tests)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from orchestrator.voice.audio import wav_header
from services.base import ChatUsage, EngineSpec, EngineState, Role, Runtime
from services.errors import EngineLoadError, InvalidInput, ModelMissing
from services.managed import ServerEngine
from services.openai_asr import OpenAITranscriber
from services.openai_llm import OpenAIChat
from services.openai_tts import OpenAISpeech, VibeVoiceSpeech
from services.registry import ADAPTERS
from services.server_errors import ServerRejected, ServerUnavailable
from tests.conftest import free_port
from tests.peers.watch import start_peer, stop_peer

KEY_ENV = "TEST_PEER_API_KEY"
KEY = "sk-peer-0123"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def peer_url(
    tiny_llm_dir: Path,
    tiny_whisper_dir: Path,
    tiny_piper_onnx: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    port = free_port()
    args = ["--port", str(port), "--api-key", KEY, "--token-delay", "0.01"]
    args += ["--llm", str(tiny_llm_dir), "--whisper", str(tiny_whisper_dir)]
    args += ["--piper", str(tiny_piper_onnx)]
    log_file = tmp_path_factory.mktemp("openai-peer") / "peer.log"
    process = start_peer("tests.peers.openai_peer", args, {}, port, log_file)
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(trust_env=False) as client:  # wait for the models (bounded)
        for _ in range(600):
            if client.get(f"{url}/health").json()["model_loaded"]:
                break
            time.sleep(0.05)
    yield f"{url}/v1"
    stop_peer(process)


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


def build(cls: type[ServerEngine], role: Role, url: str, model: str, **options: Any) -> Any:
    spec = EngineSpec(
        name=role.value,
        role=role,
        model=model,
        models_dir=Path("/nonexistent"),
        options={"url": url, "api_key_env": KEY_ENV, **options},
    )
    return cls(spec)


@pytest.fixture
async def llm(peer_url: str) -> AsyncIterator[OpenAIChat]:
    engine: OpenAIChat = build(OpenAIChat, Role.LLM, peer_url, "tiny-llm")
    yield engine
    await engine.unload()


async def test_every_adapter_is_registered_for_its_role() -> None:
    expected = {
        "ollama": Role.LLM,
        "openai-llm": Role.LLM,
        "openai-asr": Role.ASR,
        "whisper-cpp": Role.ASR,
        "openai-tts": Role.TTS,
        "vibevoice": Role.TTS,
    }
    assert {name: ADAPTERS[name][0] for name in expected} == expected


async def test_chat_streams_over_sse_with_the_key_from_the_environment(
    llm: OpenAIChat, peer_url: str
) -> None:
    assert llm.runtime is Runtime.REMOTE
    await llm.load()
    assert llm.state is EngineState.LOADED
    messages = [{"role": "user", "content": "hi"}]
    deltas = [d async for d in llm.chat(messages, options={"max_new_tokens": 5})]
    assert 1 <= len(deltas) <= 5 and all(isinstance(d, str) for d in deltas)
    assert (await llm.health()).state is EngineState.LOADED
    assert llm.memory().measured_vram_bytes is None  # someone else's server: nothing to measure
    assert KEY not in repr(llm.options)  # the config names the variable, never the key
    usage = ChatUsage()
    counted = [d async for d in llm.chat(messages, options={"max_new_tokens": 3}, usage=usage)]
    assert usage.prompt_tokens > 0 and usage.completion_tokens == len(counted) == 3
    assert usage.finish_reason == "length"  # the server's, from its last choice


async def test_closing_the_chat_stream_stops_the_server(llm: OpenAIChat, peer_url: str) -> None:
    await llm.load()
    state_url = peer_url.removesuffix("/v1") + "/peer/state"
    async with httpx.AsyncClient(trust_env=False) as client:
        before = (await client.get(state_url)).json()["cut_short"]
        stream = llm.chat([{"role": "user", "content": "go"}], options={"max_new_tokens": 60})
        async with aclosing(stream) as deltas:
            assert [await anext(deltas) for _ in range(2)]
        for _ in range(200):
            if (await client.get(state_url)).json()["cut_short"] > before:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the server went on generating after the client left")


async def test_key_problems_are_clear_and_permanent(peer_url: str, monkeypatch: Any) -> None:
    unset = build(OpenAIChat, Role.LLM, peer_url, "tiny-llm", api_key_env="NO_SUCH_KEY_VAR")
    with pytest.raises(EngineLoadError, match="environment variable NO_SUCH_KEY_VAR"):
        await unset.load()
    assert unset.state is EngineState.FAILED
    monkeypatch.setenv(KEY_ENV, "sk-wrong")
    wrong = build(OpenAIChat, Role.LLM, peer_url, "tiny-llm")
    with pytest.raises(ServerRejected, match="HTTP 401: Incorrect API key") as rejected:
        await wrong.load()
    assert not rejected.value.transient


async def test_model_check_and_server_down(peer_url: str) -> None:
    unknown = build(OpenAIChat, Role.LLM, peer_url, "gpt-9", check_model=True)
    with pytest.raises(ModelMissing, match="does not serve 'gpt-9'"):
        await unknown.load()
    down = build(OpenAIChat, Role.LLM, f"http://127.0.0.1:{free_port()}/v1", "x")
    with pytest.raises(ServerUnavailable) as failure:
        await down.load()
    assert failure.value.transient
    health = await down.health()
    assert health.state is EngineState.FAILED and "cannot connect" in health.detail


async def test_transcription_segments(peer_url: str) -> None:
    asr: OpenAITranscriber = build(OpenAITranscriber, Role.ASR, peer_url, "whisper-1")
    await asr.load()
    audio = np.random.default_rng(0).uniform(-0.3, 0.3, 32_000).astype(np.float32)
    segments = [s async for s in asr.transcribe(audio, language="en")]
    assert segments and all(0 <= s.start <= s.end <= 2.0 + 1e-6 for s in segments)
    plain: OpenAITranscriber = build(
        OpenAITranscriber, Role.ASR, peer_url, "whisper-1", response_format="text"
    )
    await plain.load()
    [whole] = [s async for s in plain.transcribe(audio)]
    assert (whole.start, whole.end) == (0.0, 2.0)
    with pytest.raises(InvalidInput):
        await anext(asr.transcribe(np.zeros((2, 2), dtype=np.float32)))


async def test_translation_goes_to_the_translations_route_without_a_language(
    peer_url: str,
) -> None:
    asr: OpenAITranscriber = build(OpenAITranscriber, Role.ASR, peer_url, "whisper-1")
    await asr.load()
    assert asr.translates
    audio = np.random.default_rng(0).uniform(-0.3, 0.3, 32_000).astype(np.float32)
    before = len(peer_requests(peer_url))
    segments = [s async for s in asr.transcribe(audio, language="de", task="translate")]
    assert segments  # the peer refuses a translation form that carries a language
    assert [r["path"] for r in peer_requests(peer_url)[before:]] == ["/v1/audio/translations"]
    named = [s async for s in asr.transcribe(audio)]
    assert named[0].language and named[0].language.isalpha()  # the server's "english"


def peer_requests(peer_url: str) -> list[dict[str, Any]]:
    state_url = peer_url.removesuffix("/v1") + "/peer/state"
    requests: list[dict[str, Any]] = httpx.get(state_url).json()["requests"]
    return requests


async def test_speech_streams_pcm_in_fixed_chunks(peer_url: str) -> None:
    tts: OpenAISpeech = build(OpenAISpeech, Role.TTS, peer_url, "tts-1", chunk_ms=50)
    await tts.load()
    chunks = [c async for c in tts.synthesize("Hello there. How are you?")]
    assert chunks and all(c.sample_rate == 24_000 for c in chunks)
    assert all(len(c.pcm16) == 2400 for c in chunks[:-1])  # 50 ms of 24 kHz PCM16
    assert 0 < len(chunks[-1].pcm16) <= 2400 and len(chunks[-1].pcm16) % 2 == 0


async def test_speech_sends_the_speed_asked_else_the_configured_one() -> None:
    sent: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content).get("speed"))
        return httpx.Response(200, headers={"Content-Type": "audio/pcm"}, content=b"\0\0" * 240)

    tts: OpenAISpeech = build(OpenAISpeech, Role.TTS, "http://peer.invalid/v1", "tts-1", speed=1.2)
    tts._client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    tts._state = EngineState.LOADED
    [_ async for _ in tts.synthesize("Hi.", speed=2.0)]
    [_ async for _ in tts.synthesize("Hi.")]
    assert sent == [2.0, 1.2]


async def test_speech_reads_a_wav_answer_for_its_rate() -> None:
    pcm = b"\x01\x00" * 16_000

    def handler(request: httpx.Request) -> httpx.Response:
        content = wav_header(16_000) + pcm
        return httpx.Response(200, headers={"Content-Type": "audio/wav"}, content=content)

    tts: OpenAISpeech = build(OpenAISpeech, Role.TTS, "http://peer.invalid/v1", "tts-1")
    tts._client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    tts._state = EngineState.LOADED  # the health call is not under test here
    chunks = [c async for c in tts.synthesize("hello")]
    assert {c.sample_rate for c in chunks} == {16_000}
    assert b"".join(c.pcm16 for c in chunks) == pcm


def test_a_supervised_engine_needs_a_command() -> None:
    with pytest.raises(ValueError, match=r"engines\.tts\.options\.command: needed to supervise"):
        build(VibeVoiceSpeech, Role.TTS, "http://127.0.0.1:8880/v1", "vibevoice")
    with pytest.raises(ValueError, match=r"engines\.asr\.options\.response_format"):
        build(OpenAITranscriber, Role.ASR, "http://127.0.0.1:1/v1", "w", response_format="srt")
