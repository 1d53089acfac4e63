"""The OpenAI-compatible speech routes, driven by the official ``openai`` client unchanged."""

from __future__ import annotations

import io
import wave
from typing import Any

import numpy as np
import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from orchestrator.api.app import create_api_app
from orchestrator.app.runtime import Runtime
from orchestrator.config import AppConfig
from orchestrator.core.idle import IdleState
from orchestrator.voice import audio
from tests.conftest import API_KEY, RuntimeFactory
from tests.fakes import FakeClock
from tests.helpers import hold_load


def wav_bytes(seconds: float = 1.0, rate: int = 22_050) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    samples = (np.sin(2 * np.pi * 330 * t) * 6000).astype(np.int16)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return buffer.getvalue()


async def start(runtime: Runtime, aiohttp_server: Any) -> tuple[TestServer, openai.AsyncOpenAI]:
    server: TestServer = await aiohttp_server(create_api_app(runtime))
    client = openai.AsyncOpenAI(
        base_url=f"http://{server.host}:{server.port}/v1", api_key=API_KEY, max_retries=0
    )
    return server, client


@pytest.fixture
async def runtime(make_runtime: RuntimeFactory, tiny_config: AppConfig) -> Runtime:
    return make_runtime(tiny_config, clock=FakeClock(), writer=True)


@pytest.fixture
async def client(runtime: Runtime, aiohttp_server: Any) -> openai.AsyncOpenAI:
    return (await start(runtime, aiohttp_server))[1]


async def test_models_list_the_engines(client: openai.AsyncOpenAI) -> None:
    models = await client.models.list()
    assert {m.id for m in models.data} == {"asr", "tts"}


async def test_transcription_in_every_format(client: openai.AsyncOpenAI) -> None:
    result = await client.audio.transcriptions.create(
        model="whisper-1", file=("hello.wav", wav_bytes()), language="en"
    )
    assert isinstance(result.text, str) and result.text
    verbose = await client.audio.transcriptions.create(
        model="asr", file=("hello.wav", wav_bytes()), response_format="verbose_json"
    )
    assert verbose.duration == pytest.approx(1.0, abs=0.01)
    assert verbose.segments and verbose.segments[0].end >= verbose.segments[0].start
    text = await client.audio.transcriptions.create(
        model="whisper-1", file=("hello.wav", wav_bytes()), response_format="text"
    )
    assert isinstance(text, str)


@pytest.mark.parametrize("fmt", ["wav", "pcm", "mp3", "opus", "flac"])
async def test_speech_streams_in_each_format(client: openai.AsyncOpenAI, fmt: str) -> None:
    async with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input="Hello there. How are you today?", response_format=fmt
    ) as response:
        assert response.headers["content-type"] == audio.CONTENT_TYPES[fmt]
        chunks = [chunk async for chunk in response.iter_bytes()]
    data = b"".join(chunks)
    if fmt == "pcm":  # headerless 24 kHz PCM16, as OpenAI sends it
        assert len(data) % 2 == 0 and len(data) > 1000
        wav = await client.audio.speech.create(
            model="tts-1",
            voice="alloy",
            input="Hello there. How are you today?",
            response_format="wav",
        )
        duration = len(audio.decode(wav.content, 24_000)) / 24_000
        assert len(data) / 2 / 24_000 == pytest.approx(duration, rel=0.25)
    else:
        assert audio.decode(data, 16_000).size > 1000


async def test_speech_round_trips_through_transcription(client: openai.AsyncOpenAI) -> None:
    speech = await client.audio.speech.create(
        model="tts-1", voice="alloy", input="One sentence.", response_format="wav"
    )
    result = await client.audio.transcriptions.create(
        model="whisper-1", file=("speech.wav", speech.content)
    )
    assert isinstance(result.text, str)


async def test_bad_input_gets_clear_errors(client: openai.AsyncOpenAI, runtime: Runtime) -> None:
    with pytest.raises(openai.BadRequestError, match="could not decode"):
        await client.audio.transcriptions.create(model="whisper-1", file=("x.wav", b"not audio"))
    with pytest.raises(openai.BadRequestError, match="empty"):
        await client.audio.transcriptions.create(model="whisper-1", file=("x.wav", b""))
    with pytest.raises(openai.NotFoundError, match="unknown asr model 'whisper-9'"):
        await client.audio.transcriptions.create(model="whisper-9", file=("x.wav", wav_bytes()))
    with pytest.raises(openai.BadRequestError, match="at most 4096"):
        await client.audio.speech.create(model="tts-1", voice="alloy", input="a" * 5000)
    with pytest.raises(openai.BadRequestError, match="response_format"):
        await client.audio.speech.create(
            model="tts-1",
            voice="alloy",
            input="hi",
            response_format="ogg-vorbis",  # type: ignore[arg-type]
        )
    # after all that the server still serves
    ok = await client.audio.speech.create(model="tts-1", voice="alloy", input="Still here.")
    assert ok.content


async def test_invalid_json_and_wrong_key(runtime: Runtime, aiohttp_server: Any) -> None:
    server, _ = await start(runtime, aiohttp_server)
    import httpx

    base = f"http://{server.host}:{server.port}"
    async with httpx.AsyncClient() as http:
        bad = await http.post(
            f"{base}/v1/audio/speech",
            content=b"{nope",
            headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        )
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "invalid_json"
    wrong = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await wrong.models.list()


async def test_a_request_wakes_hibernated_engines(
    client: openai.AsyncOpenAI, runtime: Runtime
) -> None:
    await runtime.hibernator.force(IdleState.COLD)
    response = await client.audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("hello.wav", wav_bytes())
    )
    assert response.headers["x-voice-waking"] == "asr"
    await runtime.hibernator.settled()
    assert runtime.hibernator.state is IdleState.ACTIVE
    assert runtime.fleet.engine("asr").state.value == "loaded"
    again = await client.audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("hello.wav", wav_bytes())
    )
    assert "x-voice-waking" not in again.headers


async def test_wake_timeout_is_503_with_retry_after(
    tiny_config: AppConfig, make_runtime: RuntimeFactory, aiohttp_server: Any, monkeypatch: Any
) -> None:
    """A load that cannot finish in the wake budget is a 503; once loaded, no budget applies.

    The TTS load is held on an event, so the refusal does not depend on how fast this machine is.
    """
    patient = tiny_config.model_copy(
        update={"hibernation": tiny_config.hibernation.model_copy(update={"wake_timeout_s": 0.05})}
    )
    runtime = make_runtime(patient, clock=FakeClock())
    engine = runtime.fleet.engine("tts")
    release = hold_load(engine, monkeypatch)
    _, client = await start(runtime, aiohttp_server)
    with pytest.raises(openai.InternalServerError) as caught:
        await client.audio.speech.create(model="tts-1", voice="alloy", input="Hello.")
    assert caught.value.status_code == 503
    assert caught.value.response.headers["Retry-After"] == "1"  # max(1, round(0.05 s / 2))
    assert caught.value.body["code"] == "engines_waking"  # type: ignore[index]
    assert engine.state.value == "unloaded"  # refused while the load was still held
    release.set()
    await runtime.fleet.load("tts")  # the load went on; a later request is served
    speech = await client.audio.speech.create(model="tts-1", voice="alloy", input="Hello.")
    assert speech.content


async def test_missing_model_is_503_with_the_hint(
    tiny_config: AppConfig, make_runtime: RuntimeFactory, aiohttp_server: Any, tmp_path: Any
) -> None:
    engines = dict(tiny_config.engines)
    engines["asr"] = engines["asr"].model_copy(update={"model": str(tmp_path / "gone")})
    runtime = make_runtime(tiny_config.model_copy(update={"engines": engines}))
    _, client = await start(runtime, aiohttp_server)
    with pytest.raises(openai.InternalServerError, match="python -m orchestrator download"):
        await client.audio.transcriptions.create(model="whisper-1", file=("a.wav", wav_bytes()))


_ = web
