"""The listener against a fake VAD engine: frame size and rate come from the engine, turns end
with the pre-roll kept, and barge-in is signalled when speech starts."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt

from orchestrator.config import SessionsConfig
from orchestrator.voice.boundary import SessionEvent
from orchestrator.voice.listener import PRE_ROLL_S, Listener
from services.tasks import TaskSet


class LoudIsSpeech:
    """A VAD stream that calls a frame speech when it is loud."""

    def probability(self, frame: npt.NDArray[np.float32]) -> float:
        return 1.0 if float(np.abs(frame).max()) > 0.1 else 0.0


class FakeVad:
    """Not Silero: 8 kHz and 80-sample (10 ms) frames."""

    sample_rate = 8_000
    frame_samples = 80

    def stream(self) -> LoudIsSpeech:
        return LoudIsSpeech()


def pcm16(seconds: float, level: float, rate: int = 8_000) -> bytes:
    return (np.full(int(seconds * rate), level) * 32767).astype(np.int16).tobytes()


async def test_turns_are_cut_at_the_engines_frame_and_rate() -> None:
    events: list[SessionEvent] = []
    turns: list[tuple[Any, float]] = []
    barge_ins: list[bool] = []
    heard = asyncio.Event()
    tasks = TaskSet("test-listener")

    async def emit(event: SessionEvent) -> None:
        events.append(event)

    async def on_speech() -> None:
        barge_ins.append(True)

    async def on_turn(audio: Any, stopped: float, reply: bool) -> None:
        turns.append((audio, stopped))
        heard.set()

    def no_asr() -> Any:
        raise AssertionError("partial transcripts are off")

    settings = SessionsConfig(end_of_turn_silence_ms=200, partial_transcript_s=0)
    listener = Listener(
        settings, emit, tasks, recognizer=no_asr, on_speech=on_speech, on_turn=on_turn
    )
    vad: Any = FakeVad()
    listener.attach(vad)
    assert listener.turn_settings.frame_s == 80 / 8_000

    await listener.append(pcm16(1.0, 0.0), rate=8_000)
    await listener.append(pcm16(0.5, 0.5), rate=8_000)
    await listener.append(pcm16(0.5, 0.0), rate=8_000)
    async with asyncio.timeout(5):
        await heard.wait()  # the turn is handed on in a task of the session's set

    kinds = [e.kind for e in events]
    assert kinds == ["speech_started", "speech_stopped"]
    assert events[0].at_ms == 1000 and barge_ins == [True]
    assert events[1].at_ms == 1500  # the first silent frame
    ((audio, _stopped),) = turns
    # the pre-roll (its last frame is the first loud one), the speech, and the 200 ms of
    # silence that ended the turn: whole 10 ms frames at 8 kHz, not Silero's 32 ms at 16 kHz
    pre_roll = int(PRE_ROLL_S * 8_000 / 80) - 1
    assert len(audio) == pre_roll * 80 + 4_000 + 1_600


async def test_no_partial_starts_while_the_user_pauses_before_the_turn_ends() -> None:
    """A partial started in the silence that ends a turn would still be decoding when the
    final transcription starts, and slow it: partials go out while the user speaks."""
    asked: list[float] = []  # the audio each partial was asked for, in seconds
    heard = asyncio.Event()
    tasks = TaskSet("test-listener-partials")

    class Recognizer:
        async def transcribe(self, audio: Any) -> Any:
            asked.append(len(audio) / 8_000)
            yield SimpleNamespace(text="so far")

    async def emit(event: SessionEvent) -> None:
        return None

    async def on_speech() -> None:
        return None

    async def on_turn(audio: Any, stopped: float, reply: bool) -> None:
        heard.set()

    settings = SessionsConfig(end_of_turn_silence_ms=300, partial_transcript_s=0.1)
    listener = Listener(
        settings, emit, tasks, recognizer=Recognizer, on_speech=on_speech, on_turn=on_turn
    )
    vad: Any = FakeVad()
    listener.attach(vad)
    voiced_until = 0.0
    for level, seconds in ((0.0, 0.5), (0.5, 0.6), (0.0, 0.5)):
        for _ in range(int(seconds / 0.01)):  # 10 ms at a time: the partials' tasks run
            await listener.append(pcm16(0.01, level), rate=8_000)
        if level:
            voiced_until = len(listener._utterance) * 80 / 8_000
    async with asyncio.timeout(5):
        await heard.wait()
    await tasks.cancel_all()
    assert len(asked) >= 3, "partials while the user speaks"
    assert max(asked) <= voiced_until, "none in the silence that ended the turn"
