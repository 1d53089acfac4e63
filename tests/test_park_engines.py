"""Parking the tiny real engines: the weights stay in host RAM, the model answers after resume,
and resuming builds nothing from the model files (which is why it is faster than a load:
``bench/engine_lifecycle.py`` times both on the same run).

On this CPU-only machine nothing moves off a device: CTranslate2's ``unload_model(to_cpu=True)``
returns at once for a CPU model, and a CPU torch model stays where it is. So parking here keeps
the loaded weights and stops serving; RSS shows them kept (an unload of the same engine frees
them), and a resume neither opens the files nor builds the model again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services import measure
from services.base import EngineSpec, EngineState, Role
from services.errors import CannotPark, EngineLoadError, EngineNotLoaded
from services.piper_tts import PiperEngine
from services.transformers_llm import TransformersChat
from services.whisper_asr import WhisperEngine

MB = 1_000_000
AUDIO = np.random.default_rng(3).uniform(-0.3, 0.3, 16_000).astype(np.float32)


def whisper(folder: Path, tmp: Path, compute_type: str = "int8") -> WhisperEngine:
    spec = EngineSpec("asr", Role.ASR, str(folder), tmp, compute_type=compute_type)
    return WhisperEngine(spec)


async def transcript(engine: WhisperEngine) -> list[str]:
    return [segment.text async for segment in engine.transcribe(AUDIO, language="en")]


def refuse_to_build(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[str]:
    """Make ``owner.name`` fail if called, and say whether anything tried."""
    tried: list[str] = []

    def refused(*args: Any, **kwargs: Any) -> Any:
        tried.append(name)
        raise AssertionError(f"{name} called: a resume must not read the model files")

    monkeypatch.setattr(owner, name, refused)
    return tried


async def test_whisper_parks_with_its_weights_in_ram_and_answers_after_resume(
    heavy_whisper_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import faster_whisper

    engine = whisper(heavy_whisper_dir, tmp_path, compute_type="float32")
    before = measure.sample().rss_bytes
    loaded = await engine.load()
    assert loaded.ram_delta_bytes > 25 * MB  # ~36 MB of float32 weights
    assert await transcript(engine)

    report = await engine.park()
    parked_rss = measure.sample().rss_bytes
    assert engine.state is EngineState.PARKED
    assert (await engine.health()).state is EngineState.PARKED
    with pytest.raises(EngineNotLoaded):
        await transcript(engine)
    # the weights are still in this process's RSS, and the engine says they are its
    assert parked_rss - before > 25 * MB
    assert report.ram_kept_bytes == loaded.ram_delta_bytes
    memory = engine.memory()
    assert memory.parked_ram_bytes == loaded.ram_delta_bytes
    assert memory.measured_ram_bytes is None  # not serving

    tried = refuse_to_build(monkeypatch, faster_whisper, "WhisperModel")
    resumed = await engine.load()
    assert resumed.resumed and engine.state is EngineState.LOADED
    assert tried == []  # no model built: the files were not read again
    assert await transcript(engine)  # the model answers after resume
    monkeypatch.undo()

    await engine.park()
    await engine.unload()  # a parked engine unloads: now the weights go
    assert engine.state is EngineState.UNLOADED
    assert parked_rss - measure.sample().rss_bytes > 10 * MB


async def test_transformers_parks_and_resumes_without_from_pretrained(
    tiny_llm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers

    options = {"max_new_tokens": 8, "min_new_tokens": 4}
    engine = TransformersChat(
        EngineSpec("llm", Role.LLM, str(tiny_llm_dir), tmp_path, options=options)
    )
    messages = [{"role": "user", "content": "Hello there"}]
    await engine.load()
    first = "".join([delta async for delta in engine.chat(messages)])
    assert first
    await engine.park()
    assert engine.state is EngineState.PARKED
    with pytest.raises(EngineNotLoaded):
        [delta async for delta in engine.chat(messages)]

    tried = refuse_to_build(monkeypatch, transformers.AutoModelForCausalLM, "from_pretrained")
    tried += refuse_to_build(monkeypatch, transformers.AutoTokenizer, "from_pretrained")
    assert (await engine.load()).resumed
    assert tried == []
    assert "".join([delta async for delta in engine.chat(messages)]) == first  # same model
    monkeypatch.undo()
    await engine.unload()


async def test_a_failed_resume_fails_the_engine_and_a_load_reads_the_files_again(
    tiny_whisper_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = whisper(tiny_whisper_dir, tmp_path)
    await engine.load()
    await engine.park()

    def broken() -> None:
        raise RuntimeError("device lost")

    monkeypatch.setattr(engine, "_resume_model", broken)
    with pytest.raises(EngineLoadError, match="resume failed: device lost"):
        await engine.load()
    assert engine.state is EngineState.FAILED
    monkeypatch.undo()
    report = await engine.load()  # from the files this time
    assert not report.resumed and engine.state is EngineState.LOADED
    assert await transcript(engine)
    await engine.unload()


async def test_engines_without_a_parked_state_say_so_and_keep_serving(
    tiny_piper_onnx: Path, tmp_path: Path
) -> None:
    tts = PiperEngine(EngineSpec("tts", Role.TTS, str(tiny_piper_onnx), tmp_path))
    await tts.load()
    with pytest.raises(CannotPark, match="Piper"):
        await tts.park()
    assert tts.state is EngineState.LOADED
    assert [chunk async for chunk in tts.synthesize("Still here.")]
    await tts.unload()


async def test_park_needs_a_loaded_engine_and_parking_twice_does_nothing(
    tiny_whisper_dir: Path, tmp_path: Path
) -> None:
    engine = whisper(tiny_whisper_dir, tmp_path)
    with pytest.raises(EngineNotLoaded):
        await engine.park()
    await engine.load()
    await engine.park()
    again = await engine.park()
    assert again.seconds == 0 and engine.state is EngineState.PARKED
    await engine.unload()
