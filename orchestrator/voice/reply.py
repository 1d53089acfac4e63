"""The speaking half of a cascade session: replies, one at a time, and what was heard of them.

A reply streams LLM text (the VLM's while the history holds a user's photo) into sentences
and sentences into TTS audio (``cascade.reply``), resampled to the output rate and sent on in
pieces of about ``DELTA_MS`` (the first piece of a sentence is on its way before the rest is
resampled). Each sentence is remembered with the
audio time at its end, so when the client says it played only part of a reply (``truncate``),
the history keeps only the sentences the user heard. A new reply, or the user starting to speak
(barge-in), cancels the one in progress. When an engine fails before anything was heard and its
fallback chain switches, the reply goes on with the new engine: a voice that failed is replaced
for the sentence it was to speak (the text shown stays), an LLM that failed before any text
starts the reply again. Once audio was sent, a failure ends the reply as failed, with an error
naming the engine, because a reply never switches voices mid-way. A chain with nothing left
fails each reply the same way.

Every ``reply_started`` is followed by exactly one ``reply_done`` (completed, cancelled or
failed), whenever the reply is cancelled: before its task ran, while it waits for the turn
being transcribed, mid-sentence, or while it is being finished. A reply the client asks for
while one runs is refused (OpenAI's ``conversation_already_has_active_response``); a turn the
server detects cancels the running one instead (it was barged in on).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, aclosing
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soxr

from orchestrator.config import SessionsConfig
from orchestrator.core.metrics import Metrics
from orchestrator.fleet.fallback import RoleChain
from orchestrator.voice.boundary import Emit, SessionEvent, TurnRefused
from orchestrator.voice.cascade import ReplyTimings, Translate, reply
from orchestrator.voice.history import History
from services.base import AudioChunk, ChatModel, SpeechSynthesizer
from services.errors import EngineError, InvalidInput
from services.tasks import TaskSet
from services.translation import TextTranslator

OUT_RATE = 24_000
DELTA_MS = 200  # about the audio one ``reply_audio`` event carries (soxr works in blocks)
Failover = Callable[[EngineError], Awaitable[bool]]  # True when another engine took over
# Lease the translation engine for one reply (``reply_language``): waking it if needed.
LeaseTranslator = Callable[[], AbstractAsyncContextManager[TextTranslator]]


@dataclass
class _Reply:
    response_id: str
    item_id: str
    task: asyncio.Task[None] | None = None
    sentences: list[tuple[str, int]] = field(default_factory=list)  # (text, audio ms at its end)
    samples: int = 0  # of audio sent, at OUT_RATE
    status: str = "in_progress"
    finishing: bool = False  # its task is past the reply: only ``reply_done`` is left to send
    done: bool = False  # ``reply_done`` was sent (or is being sent)

    @property
    def audio_ms(self) -> int:
        return self.samples * 1000 // OUT_RATE


class Responder:
    """Speaks a session's replies with the engines its chains currently serve."""

    def __init__(
        self,
        settings: SessionsConfig,
        history: History,
        chains: Mapping[str, RoleChain],
        emit: Emit,
        tasks: TaskSet,
        *,
        failover: Failover,
        metrics: Metrics,
        lease_translator: LeaseTranslator | None = None,
    ) -> None:
        self.settings = settings
        self.history = history
        self.chains = chains
        self.emit = emit
        self.voice: str | None = None
        # Replies are spoken in this language, translated sentence by sentence (None: as written)
        self.reply_language: str | None = settings.reply_language
        self._lease_translator = lease_translator
        self.turn_metrics: list[dict[str, float]] = []  # the last 100 turns' latencies
        self._tasks = tasks
        self._failover = failover
        self._metrics = metrics
        self._reply: _Reply | None = None

    @property
    def active(self) -> bool:
        """A reply was started and its ``reply_done`` not yet sent."""
        return self._reply is not None and not self._reply.done

    async def start(
        self,
        *,
        requested: bool = False,
        after: Collection[asyncio.Task[Any]] = (),
        turn_started: float | None = None,
        transcribed: float | None = None,
    ) -> None:
        """Start a reply. ``requested`` (the client asked) refuses while one is running, else
        the running one is cancelled; the reply first waits for the tasks ``after`` (the turns
        still being transcribed), so it answers what the user said."""
        if requested and self._reply is not None and not self._reply.done:
            raise TurnRefused(
                f"Conversation already has an active response in progress: "
                f"{self._reply.response_id}. Wait until the response is finished before "
                "creating a new one.",
                "conversation_already_has_active_response",
            )
        while self._reply is not None and not self._reply.done:  # two turns may end at once:
            await self.cancel()  # each cancel waits, and another start may slip in meanwhile
        current = _Reply(f"resp_{uuid.uuid4().hex[:16]}", f"item_{uuid.uuid4().hex[:16]}")
        self._reply = current
        await self.emit(SessionEvent("reply_started", current.item_id, current.response_id))
        if current.done:  # cancelled while ``reply_started`` was being sent
            return
        current.task = self._tasks.spawn(
            "reply", self._speak(current, after, turn_started, transcribed)
        )

    async def barge_in(self) -> None:
        """The user started speaking: a reply in progress stops at once."""
        if self._reply is not None and self._reply.status == "in_progress":
            await self.cancel()

    async def cancel(self) -> bool:
        """Stop the running reply and send its ``reply_done``; False when none was running."""
        current = self._reply
        if current is None or current.done:
            return False
        task = current.task
        if task is not None:
            if not current.finishing:
                task.cancel()
            await asyncio.wait([task])  # (not gather: a cancelled caller leaves it running)
        await self._finish(current)
        return True

    async def _finish(self, current: _Reply) -> None:
        """Send ``reply_done``, once per reply (a reply cancelled before its task ran, or
        mid-way, is ``cancelled``)."""
        if current.done:
            return
        current.done = True
        if current.status == "in_progress":
            current.status = "cancelled"
        await self.emit(
            SessionEvent(
                "reply_done",
                status=current.status,
                text=" ".join(text for text, _ in current.sentences),
                item_id=current.item_id,
                response_id=current.response_id,
            )
        )

    def truncate(self, item_id: str, audio_end_ms: int) -> None:
        """The client played only ``audio_end_ms`` of a reply: keep only those sentences."""
        current = self._reply
        if current is None or current.item_id != item_id:
            raise InvalidInput(f"no assistant item {item_id!r} to truncate")
        kept = [text for text, end_ms in current.sentences if end_ms <= audio_end_ms]
        spoken = " ".join(text for text, _ in current.sentences)
        self.history.replace_last_assistant(spoken, " ".join(kept))

    async def _speak(
        self,
        current: _Reply,
        after: Collection[asyncio.Task[Any]],
        turn_started: float | None,
        transcribed: float | None,
    ) -> None:
        if after:
            await asyncio.wait(after)  # a cancel here leaves the turns running
        timings = ReplyTimings()
        attempts = sum(len(chain.names) for chain in self.chains.values())
        for _attempt in range(attempts):
            if not await self._speak_once(current, timings):
                break
        else:  # every engine failed before anything was said
            current.status = "failed"
        self.history.add("assistant", " ".join(text for text, _ in current.sentences))
        self._record(turn_started, transcribed, timings)
        current.finishing = True
        await self._finish(current)

    async def _speak_once(self, current: _Reply, timings: ReplyTimings) -> bool:
        """One try at a reply. True when an engine failed before anything was said and another
        took over its role, so the reply starts again. A voice that fails before anything was
        heard is replaced within the try (``_other_voice``): the text shown stays."""
        ids = (current.item_id, current.response_id)
        async with AsyncExitStack() as stack:
            try:
                translate = await self._translation(stack)
            except EngineError as exc:
                current.status = "failed"
                await self.emit(_reply_event("error", ids, code=exc.code, text=str(exc), error=exc))
                return False
            return await self._speak_with(current, timings, translate)

    async def _translation(self, stack: AsyncExitStack) -> Translate | None:
        """What turns the LLM's sentences into the reply language, its engine leased for the
        reply; None when replies are spoken as written."""
        language, lease = self.reply_language, self._lease_translator
        if not language or lease is None:
            return None
        engine = await stack.enter_async_context(lease())
        source = self.settings.reply_source_language

        async def translate(sentence: str) -> str:
            [done] = await engine.translate([sentence], source=source, target=language)
            return done.text

        return translate

    async def _speak_with(
        self, current: _Reply, timings: ReplyTimings, translate: Translate | None
    ) -> bool:
        ids = (current.item_id, current.response_id)
        pending = ""
        try:  # a chain with nothing left raises NoEngine here: the reply still ends
            seeing = "vlm" in self.chains and self.history.has_images()  # a photo to look at
            llm = self.chains["vlm" if seeing else "llm"].engine
            tts = self.chains["tts"].engine
            assert isinstance(llm, ChatModel) and isinstance(tts, SpeechSynthesizer)
            pieces = reply(
                llm,
                tts,
                self.history.messages(images=seeing),
                voice=self.voice,
                llm_options=self.settings.llm_options,
                timings=timings,
                stall_timeout_s=self.settings.engine_timeout_s,
                replace_tts=self._other_voice,
                translate=translate,
            )
            async with aclosing(pieces):
                async for piece in pieces:
                    if piece.text:
                        if pending:
                            current.sentences.append((pending, current.audio_ms))
                        pending = piece.text
                        await self.emit(_reply_event("reply_text", ids, text=piece.text + " "))
                    elif piece.audio is not None:
                        for pcm in deltas(piece.audio):
                            current.samples += len(pcm) // 2
                            await self.emit(_reply_event("reply_audio", ids, audio=pcm))
                            timings.first_sent = timings.first_sent or time.perf_counter()
                            await asyncio.sleep(0)  # a long sentence does not hold the loop
            if pending:
                current.sentences.append((pending, current.audio_ms))
            current.status = "completed"
        except asyncio.CancelledError:
            current.status = "cancelled"
            if pending and current.samples:
                current.sentences.append((pending, current.audio_ms))
        except EngineError as exc:
            nothing_said = not current.sentences and not pending and current.samples == 0
            # (a voice ``_other_voice`` could not replace is no chain's current one any more:
            # this failover finds nothing to switch)
            switched = await self._failover(exc)
            if switched and nothing_said:
                return True
            current.status = "failed"
            text = str(exc)
            if current.audio_ms:
                text += f" (the reply stopped after {current.audio_ms} ms of audio was sent)"
            await self.emit(_reply_event("error", ids, code=exc.code, text=text, error=exc))
        return False

    async def _other_voice(self, exc: EngineError) -> SpeechSynthesizer | None:
        """The voice failed before anything was heard: the TTS chain's next one, if one takes
        over (then the reply goes on with it), else None."""
        if not await self._failover(exc):
            return None
        tts = self.chains["tts"].engine
        assert isinstance(tts, SpeechSynthesizer)
        return tts

    def _record(
        self, turn_started: float | None, transcribed: float | None, timings: ReplyTimings
    ) -> None:
        """A spoken turn's latencies, from the end of the user's speech (not for typed turns)."""
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
            self._metrics.turn_stage(stage, seconds)
        if timings.first_sent is not None:
            self._metrics.first_audio_sent(timings.first_sent - turn_started)


def _reply_event(kind: str, ids: tuple[str, str], **fields: Any) -> SessionEvent:
    return SessionEvent(kind, item_id=ids[0], response_id=ids[1], **fields)


def deltas(chunk: AudioChunk) -> Iterator[bytes]:
    """A TTS chunk as ``OUT_RATE`` PCM16 pieces of about ``DELTA_MS``, each resampled when it
    is wanted: the first piece of a long sentence is on its way before the rest is touched.
    One soxr stream per chunk gives the samples that resampling it whole gives (to a rounding
    of the last bit), and a piece is small enough to resample on the event loop."""
    data, rate = chunk.pcm16, chunk.sample_rate
    step = rate * DELTA_MS // 1000 * 2
    if rate == OUT_RATE:
        for at in range(0, len(data), step):
            yield data[at : at + step]
        return
    stream = soxr.ResampleStream(rate, OUT_RATE, 1, dtype="int16")
    for at in range(0, len(data), step):
        samples = np.frombuffer(data[at : at + step], dtype=np.int16)
        out = stream.resample_chunk(samples, last=at + step >= len(data))
        if len(out):
            yield out.tobytes()
