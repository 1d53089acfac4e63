"""The in-process adapters drive the real faster-whisper and Piper runtimes on tiny models."""

from __future__ import annotations

import asyncio
import inspect
import weakref
from pathlib import Path

import numpy as np
import pytest

from services import measure, nvml
from services.base import AudioChunk, EngineSpec, EngineState, Role, Runtime, Segment
from services.errors import EngineNotLoaded, InvalidInput, ModelMissing
from services.piper_tts import PiperEngine, voice_repo_path
from services.whisper_asr import WhisperEngine


def whisper(model: Path | str, models_dir: Path) -> WhisperEngine:
    spec = EngineSpec(
        "asr", Role.ASR, str(model), models_dir, compute_type="int8", options={"cpu_threads": 1}
    )
    return WhisperEngine(spec)


def piper(model: Path | str, models_dir: Path) -> PiperEngine:
    return PiperEngine(EngineSpec("tts", Role.TTS, str(model), models_dir))


def noise(seconds: float = 2.0) -> np.ndarray:
    return np.random.default_rng(0).uniform(-0.1, 0.1, int(16_000 * seconds)).astype(np.float32)


@pytest.fixture
def asr(tiny_whisper_dir: Path, tmp_path: Path) -> WhisperEngine:
    return whisper(tiny_whisper_dir, tmp_path)


@pytest.fixture
def tts(tiny_piper_onnx: Path, tmp_path: Path) -> PiperEngine:
    return piper(tiny_piper_onnx, tmp_path)


def test_adapters_keep_the_engine_contract(asr: WhisperEngine, tts: PiperEngine) -> None:
    """What the fleet reads before it loads anything, and role calls that stream."""
    for engine, role in ((asr, Role.ASR), (tts, Role.TTS)):
        assert (engine.name, engine.role, engine.runtime) == (role.value, role, Runtime.IN_PROCESS)
        assert engine.state is EngineState.UNLOADED and engine.last_error is None
        assert engine.artifacts() == []  # a local model path: nothing to fetch from the hub
    assert inspect.isasyncgenfunction(asr.transcribe)
    assert inspect.isasyncgenfunction(tts.synthesize)


async def test_whisper_load_transcribe_unload(asr: WhisperEngine) -> None:
    assert asr.state is EngineState.UNLOADED
    assert asr.memory().measured_ram_bytes is None
    report = await asr.load()
    assert asr.state is EngineState.LOADED
    assert report.seconds > 0
    assert asr.memory().measured_ram_bytes == max(report.ram_delta_bytes, 0)
    assert asr.memory().estimated_ram_bytes > 0  # from the size on disk

    segments = [segment async for segment in asr.transcribe(noise(), language="en")]
    assert segments, "random weights still decode some tokens"
    for segment in segments:
        assert isinstance(segment, Segment)
        assert 0 <= segment.start <= segment.end

    model = weakref.ref(asr._model)
    unloaded = await asr.unload()
    assert unloaded.seconds > 0
    assert asr.state is EngineState.UNLOADED
    assert model() is None, "unload must drop every reference to the model"
    assert asr.memory().measured_ram_bytes is None
    with pytest.raises(EngineNotLoaded):
        [s async for s in asr.transcribe(noise())]


async def test_transcription_streams_and_can_stop_early(asr: WhisperEngine) -> None:
    await asr.load()
    stream = asr.transcribe(noise(4.0), language="en")
    first = await anext(stream)
    assert isinstance(first, Segment)
    await stream.aclose()  # closes the decoder in its thread; must not hang
    assert asr.state is EngineState.LOADED
    await asr.unload()


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((2, 16_000), dtype=np.float32),
        np.zeros(0, dtype=np.float32),
        np.zeros(16_000, dtype=np.int16),
        np.array([0.0, np.nan, 0.1], dtype=np.float32),
    ],
    ids=["stereo", "empty", "int16", "nan"],
)
async def test_whisper_rejects_bad_audio_and_stays_loaded(
    asr: WhisperEngine, bad: np.ndarray
) -> None:
    await asr.load()
    with pytest.raises(InvalidInput):
        [s async for s in asr.transcribe(bad)]
    assert asr.state is EngineState.LOADED
    await asr.unload()


async def test_piper_streams_one_chunk_per_sentence(tts: PiperEngine) -> None:
    await tts.load()
    chunks = [chunk async for chunk in tts.synthesize("Hello there. How are you today?")]
    assert len(chunks) == 2
    for chunk in chunks:
        assert isinstance(chunk, AudioChunk)
        assert chunk.sample_rate == tts.sample_rate == 16_000
        assert chunk.pcm16 and len(chunk.pcm16) % 2 == 0
        assert chunk.duration > 0
    voice = weakref.ref(tts._voice)
    await tts.unload()
    assert voice() is None
    assert tts.state is EngineState.UNLOADED


async def test_piper_keeps_no_memory_plan_per_sentence_length(tts: PiperEngine) -> None:
    """ONNX Runtime's memory pattern keeps a plan for each input shape, and nearly every
    sentence has a phoneme count of its own: on, a 90-minute lesson's RSS grew by the plans
    (bench/soak.py). The session runs without it, as Piper's own loader would otherwise."""
    await tts.load()
    assert tts._voice.session.get_session_options().enable_mem_pattern is False
    chunks = [c async for c in tts.synthesize("Hi. Hello there, how are you today? Fine.")]
    assert len(chunks) == 3  # three lengths, each synthesised as before
    await tts.unload()


async def test_piper_rejects_bad_text(tts: PiperEngine) -> None:
    await tts.load()
    with pytest.raises(InvalidInput, match="empty"):
        [c async for c in tts.synthesize("   ")]
    with pytest.raises(InvalidInput, match="limit"):
        [c async for c in tts.synthesize("a" * 20_000)]
    assert tts.state is EngineState.LOADED
    await tts.unload()


async def test_concurrent_loads_share_one(asr: WhisperEngine) -> None:
    reports = await asyncio.gather(*(asr.load() for _ in range(5)))
    assert sum(1 for r in reports if r.seconds > 0) == 1
    assert asr.state is EngineState.LOADED
    await asr.unload()


async def test_missing_local_model_says_what_is_missing(tmp_path: Path) -> None:
    engine = whisper(tmp_path / "nowhere", tmp_path)
    assert engine.state is EngineState.MISSING
    with pytest.raises(ModelMissing) as caught:
        await engine.load()
    assert "model.bin" in str(caught.value)
    health = await engine.health()
    assert health.state is EngineState.MISSING
    assert "nowhere" in health.detail
    assert "python -m orchestrator download" in health.hint


async def test_missing_hub_model_points_into_the_models_dir(tmp_path: Path) -> None:
    engine = piper("en_US-lessac-medium", tmp_path)
    (artifact,) = engine.artifacts()
    assert artifact.repo_id == "rhasspy/piper-voices"
    assert artifact.required_files[0] == "en/en_US/lessac/medium/en_US-lessac-medium.onnx"
    health = await engine.health()
    assert health.state is EngineState.MISSING
    assert str(artifact.local_dir(tmp_path)) in health.detail


async def test_broken_model_file_fails_cleanly(tmp_path: Path, tiny_piper_onnx: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx graph")
    broken.with_name("broken.onnx.json").write_text(
        tiny_piper_onnx.with_name(tiny_piper_onnx.name + ".json").read_text()
    )
    engine = piper(broken, tmp_path)
    with pytest.raises(Exception, match="load failed") as caught:
        await engine.load()
    assert caught.value.__cause__ is not None  # the library error stays attached
    assert engine.state is EngineState.FAILED
    assert "load failed" in (engine.last_error or "")
    await engine.unload()
    assert engine.state is EngineState.UNLOADED


def test_voice_names_map_to_repository_paths() -> None:
    assert (
        voice_repo_path("de_DE-thorsten-high") == "de/de_DE/thorsten/high/de_DE-thorsten-high.onnx"
    )
    with pytest.raises(ValueError, match="Piper voice name"):
        voice_repo_path("lessac")


def test_memory_sampling_sees_allocation_and_release() -> None:
    before = measure.sample()
    block = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB, touched
    during = measure.sample()
    del block
    measure.release_freed_memory()
    after = measure.sample()
    assert during.rss_bytes - before.rss_bytes > 48 * 1024 * 1024
    assert during.rss_bytes - after.rss_bytes > 48 * 1024 * 1024
    if not nvml.list_gpus():
        assert before.vram_bytes is None  # no GPU: None, not zero
