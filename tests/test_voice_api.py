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


async def test_models_list_the_names_a_client_uses(
    client: openai.AsyncOpenAI, runtime: Runtime
) -> None:
    models = await client.models.list()
    listed = {m.id: m for m in models.data}
    asr_model, tts_model = (runtime.config.engines[n].model for n in ("asr", "tts"))
    for name in ("whisper-1", "gpt-4o-transcribe", "tts-1", "tts-1-hd", "asr", "tts"):
        assert name in listed, name
    assert asr_model in listed and tts_model in listed  # what each engine runs
    assert "vad" not in listed  # no route serves it
    assert not {"gpt-4o-mini", "gpt-4o"} & set(listed)  # this config has no LLM
    assert (listed["whisper-1"].engine, listed["tts-1"].role) == ("asr", "tts")  # type: ignore[attr-defined]
    for name in listed:
        retrieved = await client.models.retrieve(name)
        assert retrieved.id == name
    with pytest.raises(openai.NotFoundError) as missing:
        await client.models.retrieve("gpt-9")
    assert missing.value.body["code"] == "model_not_found"  # type: ignore[index]
    # the model an engine runs is a name requests may use too
    result = await client.audio.transcriptions.create(
        model=asr_model, file=("hello.wav", wav_bytes()), language="en"
    )
    assert isinstance(result.text, str)


async def test_translations_run_whispers_translate_task(
    client: openai.AsyncOpenAI, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    await runtime.fleet.load("asr")
    model = runtime.fleet.engine("asr")._model  # type: ignore[attr-defined]
    asked: list[dict[str, Any]] = []
    real = model.transcribe

    def spy(*args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "transcribe", spy)
    result = await client.audio.translations.create(model="whisper-1", file=("a.wav", wav_bytes()))
    assert isinstance(result.text, str)
    verbose = await client.audio.translations.create(
        model="whisper-1", file=("a.wav", wav_bytes()), response_format="verbose_json"
    )
    assert verbose.task == "translate"  # type: ignore[attr-defined]
    assert [a["task"] for a in asked] == ["translate", "translate"]
    with pytest.raises(openai.BadRequestError, match="language"):  # OpenAI's form has none
        await client.audio.translations.create(
            model="whisper-1",
            file=("a.wav", wav_bytes()),
            extra_body={"language": "de"},
        )


async def test_verbose_json_names_the_language_given_or_detected(
    client: openai.AsyncOpenAI, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = await client.audio.transcriptions.create(
        model="whisper-1",
        file=("a.wav", wav_bytes()),
        language="de",
        response_format="verbose_json",
    )
    assert given.language == "german"
    await runtime.fleet.load("asr")
    model = runtime.fleet.engine("asr")._model  # type: ignore[attr-defined]
    detected: list[str] = []
    real = model.transcribe

    def spy(*args: Any, **kwargs: Any) -> Any:
        segments, info = real(*args, **kwargs)
        detected.append(info.language)
        return segments, info

    monkeypatch.setattr(model, "transcribe", spy)
    found = await client.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", wav_bytes()), response_format="verbose_json"
    )
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    assert detected and found.language == LANGUAGES[detected[0]]


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


async def test_wav_is_24_khz_like_openai_whatever_the_engine_speaks(
    client: openai.AsyncOpenAI, runtime: Runtime
) -> None:
    wav = await client.audio.speech.create(
        model="tts-1", voice="alloy", input="Hello there.", response_format="wav"
    )
    with wave.open(io.BytesIO(wav.content)) as parsed:
        assert parsed.getframerate() == 24_000
    await runtime.fleet.load("tts")
    assert runtime.fleet.engine("tts").sample_rate != 24_000  # type: ignore[attr-defined]


def wav_seconds(data: bytes) -> float:
    return len(audio.decode(data, 24_000)) / 24_000


async def test_speed_changes_the_duration(
    tiny_config: AppConfig, make_runtime: RuntimeFactory, aiohttp_server: Any
) -> None:
    # The tiny voice's random duration predictor gives each phoneme under one frame, so its
    # lengths round up to one frame whatever the scale: a length scale of 6 (slow speech) puts
    # them where a faster pace can shorten them, as with a real voice.
    engines = dict(tiny_config.engines)
    options = {**engines["tts"].options, "length_scale": 6.0}
    engines["tts"] = engines["tts"].model_copy(update={"options": options})
    runtime = make_runtime(tiny_config.model_copy(update={"engines": engines}), clock=FakeClock())
    _, client = await start(runtime, aiohttp_server)
    text = "Hello there. How are you today?"
    durations = {}
    for speed in (0.5, 1.0, 2.0):
        wav = await client.audio.speech.create(
            model="tts-1", voice="alloy", input=text, response_format="wav", speed=speed
        )
        durations[speed] = wav_seconds(wav.content)
    # Piper's length scale: not exactly 1/speed (frames round up), but close
    assert durations[2.0] / durations[1.0] == pytest.approx(0.5, abs=0.1)
    assert durations[0.5] / durations[1.0] == pytest.approx(2.0, abs=0.2)


async def test_an_engine_without_a_pace_of_its_own_is_resampled() -> None:
    from orchestrator.api.speech import _paced
    from services.base import AudioChunk

    async def chunks() -> Any:
        for _ in range(3):
            yield AudioChunk(pcm16=np.zeros(16_000, dtype=np.int16).tobytes(), sample_rate=16_000)

    faster = [c async for c in _paced(chunks(), 1.6)]
    assert [c.sample_rate for c in faster] == [16_000] * 3
    assert [len(c.pcm16) // 2 for c in faster] == [10_000] * 3  # 1 s each at 1.6x: 0.625 s


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
    with pytest.raises(openai.NotFoundError, match="The model 'whisper-9' does not exist for asr"):
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
