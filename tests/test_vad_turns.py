"""Silero VAD (the real bundled model) on real speech, and turn detection over its output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orchestrator.voice.turns import TurnDetector, TurnEvent, TurnSettings
from services.base import EngineSpec, EngineState, Role
from services.errors import InvalidInput
from services.silero_vad import FRAME_SAMPLES, SAMPLE_RATE, SileroVad
from tests.speech import silence, speak


@pytest.fixture
async def vad(tmp_path: Path) -> SileroVad:
    engine = SileroVad(EngineSpec("vad", Role.VAD, "bundled", tmp_path))
    await engine.load()
    return engine


def frames(samples: np.ndarray) -> list[np.ndarray]:
    usable = len(samples) // FRAME_SAMPLES * FRAME_SAMPLES
    return list(samples[:usable].reshape(-1, FRAME_SAMPLES))


async def test_speech_scores_high_and_silence_low(vad: SileroVad) -> None:
    stream = vad.stream()
    speech = [stream.probability(f) for f in frames(speak("Hello, this is a short test."))]
    quiet = [stream.probability(f) for f in frames(silence(1.0))]
    assert max(speech) > 0.9
    assert np.mean(speech) > 0.5
    assert max(quiet[10:]) < 0.2  # once the tail of the speech has passed
    await vad.unload()
    assert vad.state is EngineState.UNLOADED


async def test_wrong_frame_size_is_refused(vad: SileroVad) -> None:
    with pytest.raises(InvalidInput, match="512 samples"):
        vad.stream().probability(np.zeros(480, dtype=np.float32))


async def test_turns_on_real_speech(vad: SileroVad) -> None:
    lead, gap, tail = 0.5, 1.0, 1.0
    first, second = speak("Good morning."), speak("Let us begin the lesson.")
    audio = np.concatenate([silence(lead), first, silence(gap), second, silence(tail)])
    stream, detector = vad.stream(), TurnDetector(TurnSettings(end_silence_s=0.4))
    turns = []
    for index, frame in enumerate(frames(audio)):
        turn = detector.feed(stream.probability(frame), index * FRAME_SAMPLES / SAMPLE_RATE)
        if turn:
            turns.append(turn)
    assert [t.event for t in turns] == [
        TurnEvent.SPEECH_STARTED,
        TurnEvent.SPEECH_STOPPED,
        TurnEvent.SPEECH_STARTED,
        TurnEvent.SPEECH_STOPPED,
    ]
    second_start = lead + len(first) / SAMPLE_RATE + gap
    assert turns[0].at == pytest.approx(lead, abs=0.15)
    assert turns[2].at == pytest.approx(second_start, abs=0.15)
    assert turns[3].at == pytest.approx(second_start + len(second) / SAMPLE_RATE, abs=0.25)


def test_detector_logic_on_scripted_probabilities() -> None:
    detector = TurnDetector(TurnSettings(start_frames=2, end_silence_s=0.1, frame_s=0.032))
    script = [0.1, 0.9, 0.2, 0.9, 0.95, 0.6, 0.4, 0.1, 0.1, 0.1, 0.1, 0.9]
    events = [
        (turn.event, round(turn.at, 3))
        for i, p in enumerate(script)
        if (turn := detector.feed(p, i * 0.032))
    ]
    # a single voiced frame is not speech; 0.4 is above the stop threshold (0.35), 0.1 is not
    assert events == [
        (TurnEvent.SPEECH_STARTED, 0.096),
        (TurnEvent.SPEECH_STOPPED, 0.224),
    ]
