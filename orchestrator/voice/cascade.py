"""One spoken reply of the cascade: LLM text deltas -> sentences -> TTS audio, pipelined.

The LLM keeps generating while earlier sentences are synthesised and streamed, so the first
audio leaves as soon as the first sentence is complete. Closing the reply (barge-in) stops
the LLM stream and the synthesis at once; what was sent so far is known sentence by sentence.
A voice that fails before the reply was heard can be replaced mid-reply (``replace_tts``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from orchestrator.voice.sentences import SentenceSplitter
from services.base import AudioChunk, ChatModel, SpeechSynthesizer
from services.errors import EngineCallError, EngineError, InvalidInput

_END = object()
T = TypeVar("T")
# The TTS failed with this error before anything was heard: another voice, or None.
ReplaceVoice = Callable[[EngineError], Awaitable[SpeechSynthesizer | None]]
Translate = Callable[[str], Awaitable[str]]  # one sentence, in the language to speak
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplyPiece:
    """Either a sentence about to be spoken (``text``) or a piece of its audio."""

    text: str = ""
    audio: AudioChunk | None = None


@dataclass
class ReplyTimings:
    """Moments of one reply (``time.perf_counter``), for the per-turn latency metrics."""

    started: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    first_sentence: float | None = None
    first_audio: float | None = None
    first_sent: float | None = None  # the first audio handed to the client (``reply.py``)


async def reply(
    llm: ChatModel,
    tts: SpeechSynthesizer,
    messages: list[dict[str, Any]],
    *,
    voice: str | None = None,
    llm_options: dict[str, Any] | None = None,
    timings: ReplyTimings | None = None,
    stall_timeout_s: float | None = None,
    replace_tts: ReplaceVoice | None = None,
    translate: Translate | None = None,
) -> AsyncGenerator[ReplyPiece, None]:
    """Stream a reply: each sentence's text, then its audio chunks, in order.

    An engine that goes quiet for ``stall_timeout_s`` (no next sentence from the LLM, no next
    chunk from the TTS) fails the reply with ``EngineCallError`` naming it, so a fallback can
    take over. When the TTS fails before any audio of the reply was yielded, ``replace_tts``
    may name another voice: the sentence is spoken again with it and the LLM goes on (no text
    is repeated); once audio was heard, or with no other voice, the error ends the reply.
    ``translate`` (a session's ``reply_language``) turns each sentence into what is spoken and
    shown, before the TTS; it counts as an engine for ``stall_timeout_s``."""
    timings = timings or ReplyTimings()
    stall_s = stall_timeout_s
    heard = False
    sentences: asyncio.Queue[object] = asyncio.Queue()
    producer = asyncio.create_task(_produce(llm, messages, llm_options, sentences, timings))
    try:
        while (sentence := await _within(sentences.get(), stall_s, llm.name)) is not _END:
            if isinstance(sentence, BaseException):
                raise sentence
            assert isinstance(sentence, str)
            sentence = "".join(ch for ch in sentence if ch.isprintable() or ch == " ")
            if not any(ch.isalnum() for ch in sentence):
                continue  # nothing to say: punctuation or symbols only
            if translate is not None:
                spoken: str = await _within(translate(sentence), stall_s, "translation")
                if not spoken.strip():
                    continue
                sentence = spoken
            yield ReplyPiece(text=sentence)
            while True:  # once more with another voice, while none was heard
                try:
                    async with aclosing(tts.synthesize(sentence, voice=voice)) as chunks:
                        while chunk := await _within(anext(chunks, None), stall_s, tts.name):
                            if timings.first_audio is None:
                                timings.first_audio = time.perf_counter()
                            heard = True
                            yield ReplyPiece(audio=chunk)
                    break
                except InvalidInput as exc:  # one unspeakable sentence must not end the reply
                    log.warning("skipped a sentence the voice cannot speak: %s", exc)
                    break
                except EngineError as exc:
                    other = None if heard or replace_tts is None else await replace_tts(exc)
                    if other is None:
                        raise
                    tts = other
    finally:
        producer.cancel()
        try:
            await producer
        except asyncio.CancelledError:
            if (task := asyncio.current_task()) is not None and task.cancelling():
                raise


async def _produce(
    llm: ChatModel,
    messages: list[dict[str, Any]],
    options: dict[str, Any] | None,
    out: asyncio.Queue[object],
    timings: ReplyTimings,
) -> None:
    splitter = SentenceSplitter()
    try:
        async with aclosing(llm.chat(messages, options=options)) as deltas:
            async for delta in deltas:
                if timings.first_token is None:
                    timings.first_token = time.perf_counter()
                for sentence in splitter.feed(delta):
                    _first_sentence(timings)
                    out.put_nowait(sentence)
        for sentence in splitter.flush():
            _first_sentence(timings)
            out.put_nowait(sentence)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # handed to the consumer, which raises it in the reply's task
        out.put_nowait(exc)
    out.put_nowait(_END)


async def _within(step: Awaitable[T], timeout_s: float | None, engine: str) -> T:
    try:
        async with asyncio.timeout(timeout_s):
            return await step
    except TimeoutError:
        raise EngineCallError(f"no output for {timeout_s} s", engine=engine) from None


def _first_sentence(timings: ReplyTimings) -> None:
    if timings.first_sentence is None:
        timings.first_sentence = time.perf_counter()
