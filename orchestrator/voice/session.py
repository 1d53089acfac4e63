"""A voice session on the cascade: audio in, VAD turns, transcripts, spoken replies, barge-in.

The session is independent of any wire protocol: it reports what happens through ``emit`` with
the small events below, and a front-end (``orchestrator.api.realtime.connection``) renders
them. It holds a lease on its engines for as long as it is open (an open session is activity:
nothing it uses is unloaded under it), and the hibernator hears when it opens and closes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soxr

from orchestrator.app.runtime import Runtime
from orchestrator.fleet.fallback import RoleChain
from orchestrator.voice.cascade import ReplyTimings, reply
from orchestrator.voice.history import History
from orchestrator.voice.turns import TurnDetector, TurnEvent, TurnSettings
from services.base import ChatModel, Engine, SpeechRecognizer, SpeechSynthesizer
from services.errors import EngineError, InvalidInput
from services.silero_vad import FRAME_SAMPLES, SAMPLE_RATE, SileroVad

log = logging.getLogger(__name__)
OUT_RATE = 24_000
PRE_ROLL_S = 0.3


@dataclass(frozen=True)
class SessionEvent:
    """What happened, for the front-end: ``kind`` plus the fields that kind uses."""

    kind: str  # waking|speech_started|speech_stopped|transcript|reply_started|reply_text|
    # reply_audio|reply_done|truncated|error
    item_id: str = ""
    response_id: str = ""
    text: str = ""
    audio: bytes = b""
    at_ms: int = 0
    status: str = ""
    code: str = ""
    engines: tuple[str, ...] = ()
    error: EngineError | None = None  # kind error: what failed, for the front-end to render


@dataclass
class _Reply:
    response_id: str
    item_id: str
    task: asyncio.Task[None] | None = None
    sentences: list[tuple[str, int]] = field(default_factory=list)  # (text, audio ms at its end)
    audio_ms: int = 0
    status: str = "in_progress"


Emit = Callable[[SessionEvent], Awaitable[None]]


class CascadeSession:
    def __init__(self, runtime: Runtime, emit: Emit, *, session_id: str | None = None) -> None:
        self.id = session_id or f"sess_{uuid.uuid4().hex[:16]}"
        self.runtime = runtime
        self.settings = runtime.config.sessions
        self.emit = emit
        self.instructions = self.settings.instructions
        self.voice: str | None = None
        self.server_vad = True
        self.history = History(self.instructions, budget_tokens=self.settings.history_tokens)
        self.turn_metrics: list[dict[str, float]] = []
        self._stack = AsyncExitStack()
        self._engines: dict[str, Engine] = {}
        self._detector = TurnDetector(self._turn_settings())
        self._resampler: Any = None
        self._vad: Any = None
        self._pending = np.zeros(0, dtype=np.float32)
        self._utterance: list[np.ndarray] = []
        self._stream_s = 0.0
        self._reply: _Reply | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.chains: dict[str, RoleChain] = {}
        self.opened_at = time.time()
        self._partial: asyncio.Future[None] | None = None
        self._partial_at = 0.0

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        s = self.settings
        fallbacks: dict[str, tuple[str, ...]] = {str(k): v for k, v in s.fallbacks.items()}
        primaries = {"asr": s.asr, "llm": s.llm, "tts": s.tts}
        chains = {role: [name, *fallbacks.get(role, ())] for role, name in primaries.items()}
        names = [s.vad, *(n for chain in chains.values() for n in chain)]
        missing = [n for n in names if n not in self.runtime.fleet.names]
        if missing:
            raise InvalidInput(f"the cascade needs engines that are not configured: {missing}")

        async def waking(engines: list[str]) -> None:
            await self.emit(SessionEvent("waking", engines=tuple(engines)))

        def on_waking(engines: list[str]) -> None:
            self._spawn(waking(engines))

        timeout = self.runtime.config.hibernation.wake_timeout_s
        self._engines = await self._stack.enter_async_context(
            self.runtime.fleet.lease([s.vad], timeout_s=timeout, on_waking=on_waking)
        )
        for role, candidates in chains.items():
            chain = RoleChain(
                role,
                candidates,
                self.runtime.fleet,
                timeout_s=timeout,
                on_switch=self._switched,
                on_waking=on_waking,
            )
            self._stack.push_async_callback(chain.close)
            await chain.open()
            self.chains[role] = chain
        if any(len(c.names) > 1 for c in self.chains.values()):
            self._spawn(self._probe_failed_engines())
        self.runtime.hibernator.session_opened(self.id)
        self.runtime.sessions[self.id] = self
        self._stack.callback(self.runtime.sessions.pop, self.id, None)
        self._stack.callback(self.runtime.hibernator.session_closed, self.id)
        vad = self._engines[s.vad]
        assert isinstance(vad, SileroVad)
        self._vad = vad.stream()
        self._resampler = None

    async def close(self) -> None:
        await self.cancel_reply()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._stack.aclose()

    def summary(self) -> dict[str, Any]:
        """What the console shows: back-end, engines serving each role, and turn latencies."""
        return {
            "id": self.id,
            "backend": "cascade",
            "opened_at": self.opened_at,
            "engines": {role: chain.current for role, chain in self.chains.items()},
            "failed": {role: dict(chain.failed) for role, chain in self.chains.items()},
            "turns": len(self.turn_metrics),
            "last_turn": self.turn_metrics[-1] if self.turn_metrics else None,
            "history_tokens": self.history.tokens,
        }

    async def _switched(self, role: str, source: str | None, target: str, why: str) -> None:
        log.warning("session %s: %s %s -> %s (%s)", self.id, role, source, target, why)
        self.runtime.metrics.fallback_switch(role, source or "", target)
        await self.emit(SessionEvent("fallback", text=why, engines=(role, source or "", target)))

    async def _probe_failed_engines(self) -> None:
        """Every ``fallback_probe_s``, try failed better engines again (a loop-owned timer)."""
        while True:
            await asyncio.sleep(self.settings.fallback_probe_s)
            for chain in self.chains.values():
                if chain.failed:
                    await chain.probe()

    async def _failover(self, exc: EngineError) -> bool:
        """Switch the role whose engine raised ``exc``; False when nothing could take over."""
        for chain in self.chains.values():
            if chain.current is not None and chain.current == exc.engine:
                switched: bool = await chain.fail(str(exc), transient=exc.transient)
                return switched
        return False

    def configure(
        self,
        *,
        instructions: str | None,
        voice: str | None,
        vad: dict[str, Any] | None,
        vad_enabled: bool | None,
    ) -> None:
        if instructions is not None:
            self.instructions = instructions
            self.history.system = type(self.history.system)("system", instructions)
        if voice is not None:
            self.voice = voice or None
        if vad_enabled is not None:
            self.server_vad = vad_enabled
        if vad:
            self._detector = TurnDetector(self._turn_settings(vad))

    def _turn_settings(self, vad: dict[str, Any] | None = None) -> TurnSettings:
        vad = vad or {}
        silence = vad.get("silence_duration_ms", self.settings.end_of_turn_silence_ms)
        threshold = vad.get("threshold", self.settings.vad_threshold)
        return TurnSettings(threshold=float(threshold), end_silence_s=float(silence) / 1000)

    # -- audio in ----------------------------------------------------------------------------

    async def append_audio(self, pcm16: bytes, rate: int = OUT_RATE) -> None:
        """Take PCM16 mono audio; with server VAD on, turns are found and answered."""
        if len(pcm16) % 2:
            raise InvalidInput("PCM16 audio must have an even number of bytes")
        samples = np.frombuffer(pcm16, dtype=np.int16).astype(np.float32) / 32768.0
        if self._resampler is None:
            self._resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32")
        resampled = self._resampler.resample_chunk(samples)
        self._pending = np.concatenate([self._pending, resampled])
        usable = len(self._pending) // FRAME_SAMPLES * FRAME_SAMPLES
        frames, self._pending = self._pending[:usable], self._pending[usable:]
        if not usable:
            return
        probabilities = await asyncio.to_thread(
            lambda: [self._vad.probability(f) for f in frames.reshape(-1, FRAME_SAMPLES)]
        )
        for frame, probability in zip(
            frames.reshape(-1, FRAME_SAMPLES), probabilities, strict=True
        ):
            await self._frame(frame, probability)

    async def _frame(self, frame: np.ndarray, probability: float) -> None:
        at = self._stream_s
        self._stream_s += FRAME_SAMPLES / SAMPLE_RATE
        self._utterance.append(frame)
        turn = self._detector.feed(probability, at) if self.server_vad else None
        if turn is None:
            if not self._detector.speaking and self.server_vad:
                keep = int(PRE_ROLL_S * SAMPLE_RATE / FRAME_SAMPLES)
                self._utterance = self._utterance[-keep:]
            elif sum(len(f) for f in self._utterance) > self.settings.max_utterance_s * SAMPLE_RATE:
                await self._end_turn(at)
            elif self._detector.speaking:
                self._maybe_partial()
            return
        if turn.event is TurnEvent.SPEECH_STARTED:
            await self.emit(SessionEvent("speech_started", at_ms=int(turn.at * 1000)))
            if self._reply is not None and self._reply.status == "in_progress":
                await self.cancel_reply()  # barge-in
        else:
            await self._end_turn(turn.at)

    def _maybe_partial(self) -> None:
        """While the user speaks, transcribe what was said so far every ``partial_transcript_s``
        of audio (one at a time, so partials never queue up behind each other)."""
        interval = self.settings.partial_transcript_s
        heard = len(self._utterance) * FRAME_SAMPLES / SAMPLE_RATE
        busy = self._partial is not None and not self._partial.done()
        if interval <= 0 or busy or heard - self._partial_at < interval:
            return
        self._partial_at = heard
        audio = np.concatenate(self._utterance)
        self._partial = asyncio.ensure_future(self._transcribe_partial(audio))
        self._tasks.add(self._partial)
        self._partial.add_done_callback(self._tasks.discard)

    async def _transcribe_partial(self, audio: np.ndarray) -> None:
        asr = self.chains["asr"].engine
        assert isinstance(asr, SpeechRecognizer)
        try:
            async with aclosing(asr.transcribe(audio)) as segments:
                text = "".join([s.text async for s in segments]).strip()
        except EngineError as exc:  # a partial is a courtesy: the final transcript decides
            log.info("partial transcript failed: %s", exc)
            return
        await self.emit(SessionEvent("partial_transcript", text=text))

    async def commit(self) -> None:
        """End the user's turn now (manual turn taking, server VAD off)."""
        await self._end_turn(self._stream_s)

    def clear(self) -> None:
        self._utterance = []

    async def _end_turn(self, at_s: float) -> None:
        stopped = time.perf_counter()
        if self._partial is not None:
            self._partial.cancel()  # the final transcript supersedes it
        self._partial_at = 0.0
        await self.emit(SessionEvent("speech_stopped", at_ms=int(at_s * 1000)))
        audio = np.concatenate(self._utterance) if self._utterance else np.zeros(0, np.float32)
        self._utterance = []
        if audio.size < FRAME_SAMPLES:
            return
        self._spawn(self._transcribe_and_reply(audio, stopped))

    async def _transcribe_and_reply(self, audio: np.ndarray, stopped: float) -> None:
        item_id = f"item_{uuid.uuid4().hex[:16]}"
        while True:
            asr = self.chains["asr"].engine
            assert isinstance(asr, SpeechRecognizer)
            try:
                async with aclosing(asr.transcribe(audio)) as segments:
                    text = "".join([s.text async for s in segments]).strip()
                break
            except InvalidInput as exc:
                await self.emit(SessionEvent("error", code=exc.code, text=str(exc), error=exc))
                return
            except EngineError as exc:
                if not await self._failover(exc):
                    await self.emit(SessionEvent("error", code=exc.code, text=str(exc), error=exc))
                    return
        transcribed = time.perf_counter()
        await self.emit(SessionEvent("transcript", item_id=item_id, text=text))
        self.history.add("user", text)
        await self.start_reply(turn_started=stopped, transcribed=transcribed)

    def add_user_text(self, text: str) -> str:
        self.history.add("user", text)
        return f"item_{uuid.uuid4().hex[:16]}"

    # -- replies -----------------------------------------------------------------------------

    async def start_reply(
        self, *, turn_started: float | None = None, transcribed: float | None = None
    ) -> None:
        await self.cancel_reply()
        current = _Reply(f"resp_{uuid.uuid4().hex[:16]}", f"item_{uuid.uuid4().hex[:16]}")
        self._reply = current
        await self.emit(SessionEvent("reply_started", current.item_id, current.response_id))
        current.task = asyncio.create_task(self._speak(current, turn_started, transcribed))

    async def _speak(
        self, current: _Reply, turn_started: float | None, transcribed: float | None
    ) -> None:
        timings = ReplyTimings()
        attempts = sum(len(chain.names) for chain in self.chains.values())
        for _attempt in range(attempts):
            if not await self._speak_once(current, timings):
                break
        spoken = " ".join(text for text, _ in current.sentences)
        self.history.add("assistant", spoken)
        self._record(turn_started, transcribed, timings)
        await self.emit(
            SessionEvent(
                "reply_done",
                status=current.status,
                text=spoken,
                item_id=current.item_id,
                response_id=current.response_id,
            )
        )

    async def _speak_once(self, current: _Reply, timings: ReplyTimings) -> bool:
        """One try at a reply. True when an engine failed before anything was said and another
        took over its role, so the reply starts again (a sentence never switches voices)."""
        llm, tts = self.chains["llm"].engine, self.chains["tts"].engine
        assert isinstance(llm, ChatModel) and isinstance(tts, SpeechSynthesizer)
        ids = (current.item_id, current.response_id)
        pending = ""
        try:
            messages = self.history.messages()
            options = self.settings.llm_options
            pieces = reply(
                llm,
                tts,
                messages,
                voice=self.voice,
                llm_options=options,
                timings=timings,
                stall_timeout_s=self.settings.engine_timeout_s,
            )
            async with aclosing(pieces):
                async for piece in pieces:
                    if piece.text:
                        if pending:
                            current.sentences.append((pending, current.audio_ms))
                        pending = piece.text
                        await self.emit(_reply_event("reply_text", ids, text=piece.text + " "))
                    elif piece.audio is not None:
                        pcm = piece.audio.pcm16
                        if piece.audio.sample_rate != OUT_RATE:
                            pcm = await asyncio.to_thread(
                                _to_out_rate, pcm, piece.audio.sample_rate
                            )
                        current.audio_ms += len(pcm) * 1000 // (2 * OUT_RATE)
                        await self.emit(_reply_event("reply_audio", ids, audio=pcm))
            if pending:
                current.sentences.append((pending, current.audio_ms))
            current.status = "completed"
        except asyncio.CancelledError:
            current.status = "cancelled"
            if pending and current.audio_ms:
                current.sentences.append((pending, current.audio_ms))
        except EngineError as exc:
            nothing_said = not current.sentences and not pending and current.audio_ms == 0
            switched = await self._failover(exc)
            if switched and nothing_said:
                return True
            current.status = "failed"
            await self.emit(_reply_event("error", ids, code=exc.code, text=str(exc), error=exc))
        return False

    async def cancel_reply(self) -> None:
        current = self._reply
        if current is None or current.task is None or current.task.done():
            return
        current.task.cancel()
        await asyncio.gather(current.task, return_exceptions=True)

    def truncate(self, item_id: str, audio_end_ms: int) -> None:
        """The client played only ``audio_end_ms`` of a reply: keep only those sentences."""
        current = self._reply
        if current is None or current.item_id != item_id:
            raise InvalidInput(f"no assistant item {item_id!r} to truncate")
        kept = [text for text, end_ms in current.sentences if end_ms <= audio_end_ms]
        spoken = " ".join(text for text, _ in current.sentences)
        self.history.replace_last_assistant(spoken, " ".join(kept))

    def _record(
        self, turn_started: float | None, transcribed: float | None, timings: ReplyTimings
    ) -> None:
        if turn_started is None or timings.first_audio is None:
            return
        first_sentence = timings.first_sentence or timings.first_audio
        record = {
            "transcript_s": (transcribed or turn_started) - turn_started,
            "first_token_s": (timings.first_token or timings.started) - turn_started,
            # TTS time to first byte: from the first complete sentence to its first audio
            "tts_first_byte_s": timings.first_audio - first_sentence,
            "first_audio_s": timings.first_audio - turn_started,
            "turn_total_s": time.perf_counter() - turn_started,
        }
        self.turn_metrics = [*self.turn_metrics[-99:], record]
        for stage, seconds in record.items():
            self.runtime.metrics.turn_stage(stage, seconds)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _reply_event(kind: str, ids: tuple[str, str], **fields: Any) -> SessionEvent:
    return SessionEvent(kind, item_id=ids[0], response_id=ids[1], **fields)


def _to_out_rate(pcm16: bytes, rate: int) -> bytes:
    samples = np.frombuffer(pcm16, dtype=np.int16)
    return np.asarray(soxr.resample(samples, rate, OUT_RATE), dtype=np.int16).tobytes()
