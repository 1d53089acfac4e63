"""The listening half of a cascade session: audio in, the user's turns out.

Client audio (PCM16, any rate) is resampled to the VAD engine's rate and cut into its frames;
each frame's speech probability feeds a ``TurnDetector``. While nobody speaks only a short
pre-roll is kept, so a turn starts with the syllable that triggered it. While the user speaks,
partial transcripts go out now and then (not in a pause); when the turn ends, the utterance
goes to the session (``on_turn``), which transcribes and answers it. With server VAD off
(push-to-talk) the VAD is not run and no speech events are sent: the client ends each turn
(``commit``), everything heard since is the utterance, and it is transcribed but not answered
(the client asks for the reply); a commit of less than ``MIN_COMMIT_S`` is refused as OpenAI
refuses it.

The frame size and rate are the engine's (``VoiceActivityDetector``), never an adapter's
constants: the listener learns them when the session attaches its leased VAD.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine
from contextlib import aclosing
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

from orchestrator.config import SessionsConfig
from orchestrator.voice.boundary import Emit, SessionEvent, TurnRefused
from orchestrator.voice.turns import TurnDetector, TurnEvent, TurnSettings
from services.base import SpeechRecognizer, VadStream, VoiceActivityDetector
from services.errors import EngineError, InvalidInput
from services.tasks import TaskSet

log = logging.getLogger(__name__)
IN_RATE = 24_000  # the Realtime API's pcm16 rate, when the caller names none
PRE_ROLL_S = 0.3
MIN_COMMIT_S = 0.1  # OpenAI refuses a commit of less than 100 ms

Audio = npt.NDArray[np.float32]
# the utterance, perf_counter at its end, and whether to answer it (server VAD) or not
OnTurn = Callable[[Audio, float, bool], Coroutine[Any, Any, None]]


class Listener:
    """Turns one stream of client audio into turns; owned by a ``CascadeSession``."""

    def __init__(
        self,
        settings: SessionsConfig,
        emit: Emit,
        tasks: TaskSet,
        *,
        recognizer: Callable[[], SpeechRecognizer],
        on_speech: Callable[[], Coroutine[Any, Any, None]],
        on_turn: OnTurn,
    ) -> None:
        self.settings = settings
        self.emit = emit
        self.server_vad = True
        self._tasks = tasks
        self._recognizer = recognizer
        self._on_speech = on_speech  # the user started speaking: barge-in
        self._on_turn = on_turn
        self._vad: VadStream | None = None
        self._rate = 0  # the VAD engine's, once attached
        self._frame_samples = 0
        self._detector = TurnDetector(self._turn_settings())
        self._resampler: Any = None
        self._pending = np.zeros(0, dtype=np.float32)
        self._utterance: list[Audio] = []
        self._stream_s = 0.0
        self._partial: asyncio.Task[None] | None = None
        self._partial_at = 0.0
        self._turns: set[asyncio.Task[None]] = set()  # turns handed on, not yet transcribed

    @property
    def turn_settings(self) -> TurnSettings:
        return self._detector.settings

    def attach(self, vad: VoiceActivityDetector) -> None:
        """Listen with a (leased, loaded) VAD engine: a fresh stream at its rate and frame."""
        self._vad = vad.stream()
        self._rate, self._frame_samples = vad.sample_rate, vad.frame_samples
        self._resampler = None
        frame_s = self._frame_samples / self._rate
        if self._detector.settings.frame_s != frame_s:
            self._detector = TurnDetector(dataclasses.replace(self.turn_settings, frame_s=frame_s))

    def configure(self, *, vad: dict[str, Any] | None, vad_enabled: bool | None) -> None:
        if vad_enabled is not None and vad_enabled != self.server_vad:
            self.server_vad = vad_enabled
            self._detector = TurnDetector(self.turn_settings)  # whoever spoke, it starts again
        if vad:
            self._detector = TurnDetector(self._turn_settings(vad))

    def _turn_settings(self, vad: dict[str, Any] | None = None) -> TurnSettings:
        vad = vad or {}
        silence = vad.get("silence_duration_ms", self.settings.end_of_turn_silence_ms)
        threshold = vad.get("threshold", self.settings.vad_threshold)
        settings = TurnSettings(threshold=float(threshold), end_silence_s=float(silence) / 1000)
        if self._frame_samples:
            settings = dataclasses.replace(settings, frame_s=self._frame_samples / self._rate)
        return settings

    # -- audio in ----------------------------------------------------------------------------

    async def append(self, pcm16: bytes, rate: int = IN_RATE) -> None:
        """Take PCM16 mono audio; with server VAD on, turns are found and handed on."""
        if len(pcm16) % 2:
            raise InvalidInput("PCM16 audio must have an even number of bytes")
        samples = np.frombuffer(pcm16, dtype=np.int16).astype(np.float32) / 32768.0
        if self._resampler is None:
            self._resampler = soxr.ResampleStream(rate, self._rate, 1, dtype="float32")
        resampled = self._resampler.resample_chunk(samples)
        self._pending = np.concatenate([self._pending, resampled])
        size = self._frame_samples
        usable = len(self._pending) // size * size
        frames, self._pending = self._pending[:usable], self._pending[usable:]
        if not usable:
            return
        if not self.server_vad:  # push-to-talk: nothing to detect, the client commits
            self._utterance.extend(frames.reshape(-1, size))
            self._stream_s += usable / self._rate
            if self._heard_s() > self.settings.max_utterance_s:
                await self._end_turn(self._stream_s)
            return
        vad = self._vad
        assert vad is not None
        probabilities = await asyncio.to_thread(
            lambda: [vad.probability(f) for f in frames.reshape(-1, size)]
        )
        for frame, probability in zip(frames.reshape(-1, size), probabilities, strict=True):
            await self._frame(frame, probability)

    async def _frame(self, frame: Audio, probability: float) -> None:
        at = self._stream_s
        self._stream_s += self._frame_samples / self._rate
        self._utterance.append(frame)
        turn = self._detector.feed(probability, at) if self.server_vad else None
        if turn is None:
            if not self._detector.speaking and self.server_vad:
                keep = int(PRE_ROLL_S * self._rate / self._frame_samples)
                self._utterance = self._utterance[-keep:]
            elif sum(len(f) for f in self._utterance) > self.settings.max_utterance_s * self._rate:
                await self._end_turn(at)
            elif self._detector.speaking and not self._detector.pausing:
                self._maybe_partial()
            return
        if turn.event is TurnEvent.SPEECH_STARTED:
            await self.emit(SessionEvent("speech_started", at_ms=int(turn.at * 1000)))
            await self._on_speech()
        else:
            await self._end_turn(turn.at)

    def _maybe_partial(self) -> None:
        """While the user speaks, transcribe what was said so far every ``partial_transcript_s``
        of audio (one at a time, so partials never queue up behind each other). Not while the
        user pauses: the turn may end within ``end_of_turn_silence_ms``, and a partial still
        decoding then would slow the final transcription (it cannot be stopped mid-decode)."""
        interval = self.settings.partial_transcript_s
        heard = len(self._utterance) * self._frame_samples / self._rate
        busy = self._partial is not None and not self._partial.done()
        if interval <= 0 or busy or heard - self._partial_at < interval:
            return
        self._partial_at = heard
        audio = np.concatenate(self._utterance)
        self._partial = self._tasks.spawn("partial", self._transcribe_partial(audio))

    async def _transcribe_partial(self, audio: Audio) -> None:
        try:
            asr = self._recognizer()
            async with aclosing(asr.transcribe(audio)) as segments:
                text = "".join([s.text async for s in segments]).strip()
        except EngineError as exc:  # a partial is a courtesy: the final transcript decides
            log.info("partial transcript failed: %s", exc)
            return
        await self.emit(SessionEvent("partial_transcript", text=text))

    # -- turn ends ---------------------------------------------------------------------------

    def _heard_s(self) -> float:
        return (sum(len(f) for f in self._utterance) + len(self._pending)) / (self._rate or 1)

    async def commit(self) -> None:
        """End the user's turn now (what is short of a VAD frame included); ``TurnRefused``
        when less than ``MIN_COMMIT_S`` was heard since the last turn."""
        heard = self._heard_s()
        if heard < MIN_COMMIT_S:
            raise TurnRefused(
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_S * 1000:.0f}ms of audio, but buffer only has {heard * 1000:.2f}ms "
                "of audio.",
                "input_audio_buffer_commit_empty",
            )
        if len(self._pending):
            self._utterance.append(self._pending)
            self._pending = np.zeros(0, dtype=np.float32)
        await self._end_turn(self._stream_s)

    def clear(self) -> None:
        self._utterance = []
        self._pending = np.zeros(0, dtype=np.float32)

    def pending_turns(self) -> list[asyncio.Task[None]]:
        """The turns handed on and not transcribed yet (a reply asked for waits for them)."""
        return list(self._turns)

    async def _end_turn(self, at_s: float) -> None:
        stopped = time.perf_counter()
        if self._partial is not None:
            self._partial.cancel()  # the final transcript supersedes it
        self._partial_at = 0.0
        if self.server_vad:
            await self.emit(SessionEvent("speech_stopped", at_ms=int(at_s * 1000)))
        audio = np.concatenate(self._utterance) if self._utterance else np.zeros(0, np.float32)
        self._utterance = []
        if audio.size == 0 or audio.size < self._frame_samples:
            return  # nothing heard, or less than one frame of it
        turn = self._tasks.spawn("turn", self._on_turn(audio, stopped, self.server_vad))
        self._turns.add(turn)
        turn.add_done_callback(self._turns.discard)
