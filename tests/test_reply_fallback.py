"""A cascade session's replies when engines fail: every reply ends with ``reply_done``.

Fake engines at the role interfaces, each told when to fail, serve a real ``CascadeSession``
(its fallback chains, its responder, leases from a real fleet). Turns are typed text; each
test waits on the session's ``reply_done`` events, nothing sleeps.

- An engine that dies before any audio was sent: the reply goes on with the fallback engine,
  and the client hears it (the sentence already shown is not shown twice).
- An engine that dies after audio was sent: the reply ends ``failed`` with an error caused by
  the server (never one that blames the client's input).
- A chain with nothing left: each turn still ends, ``failed`` with an error, and the session
  answers again once an engine is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.app.runtime import Runtime
from orchestrator.config import load_config
from orchestrator.voice.boundary import SessionEvent
from orchestrator.voice.session import CascadeSession
from services.base import AudioChunk, Role, Segment
from services.errors import EngineCallError, InvalidInput
from tests.conftest import RuntimeFactory
from tests.fakes import FakeEngine

RATE = 24_000
SAID = "Hello there. How are you today?"


class FakeChat(FakeEngine):
    """An LLM that says ``SAID``, or fails at the start while ``failures`` last."""

    def __init__(self, name: str) -> None:
        super().__init__(name, Role.LLM, steps=1)
        self.chat_failures = 0

    async def chat(
        self, messages: list[dict[str, str]], *, options: dict[str, Any] | None = None
    ) -> AsyncGenerator[str, None]:
        if self.chat_failures:
            self.chat_failures -= 1
            raise EngineCallError("the model went away", engine=self.name)
        for word in SAID.split(" "):
            yield word + " "


class FakeVoice(FakeEngine):
    """A TTS that gives two chunks per sentence; ``fail_at`` makes the n-th sentence (from 0)
    fail, after ``fail_after`` of its chunks."""

    def __init__(self, name: str) -> None:
        super().__init__(name, Role.TTS, steps=1)
        self.fail_at: int | None = None
        self.fail_after = 0
        self.sentences: list[str] = []

    async def synthesize(
        self, text: str, *, voice: str | None = None
    ) -> AsyncGenerator[AudioChunk, None]:
        index = len(self.sentences)
        self.sentences.append(text)
        for chunk in range(2):
            if index == self.fail_at and chunk == self.fail_after:
                raise EngineCallError("synthesis crashed", engine=self.name)
            yield AudioChunk(np.full(2400, 100 * (chunk + 1), np.int16).tobytes(), RATE)


class FakeAsr(FakeEngine):
    def __init__(self, name: str) -> None:
        super().__init__(name, Role.ASR, steps=1)
        self.transcribe_failures = 0

    async def transcribe(
        self, audio: Any, *, language: str | None = None
    ) -> AsyncGenerator[Segment, None]:
        if self.transcribe_failures:
            self.transcribe_failures -= 1
            raise EngineCallError("the recogniser went away", engine=self.name)
        yield Segment(0.0, 1.0, "hello")


class Silence:
    def probability(self, frame: Any) -> float:
        return 0.0


class FakeVad(FakeEngine):
    sample_rate = 16_000
    frame_samples = 512

    def stream(self) -> Silence:
        return Silence()


def fake_engines() -> dict[str, FakeEngine]:
    return {
        "vad": FakeVad("vad", Role.VAD),
        "asr": FakeAsr("asr"),
        "llm": FakeChat("llm"),
        "llm2": FakeChat("llm2"),
        "tts": FakeVoice("tts"),
        "tts2": FakeVoice("tts2"),
    }


def session_config(tmp: Path, fallbacks: str) -> Path:
    path = tmp / "replies.toml"
    path.write_text(
        f"""
profile = "cpu"
[state]
dir = "{tmp}"
[models]
auto_download = false
[engines.llm2]
role = "llm"
adapter = "transformers"
model = "/nonexistent"
[engines.tts2]
role = "tts"
adapter = "piper"
model = "/nonexistent"
[sessions]
partial_transcript_s = 0
fallbacks = {fallbacks}
"""
    )
    return path


class Client:
    """What a front-end sees of a session: its events, and a wait for the next reply's end."""

    def __init__(self) -> None:
        self.events: list[SessionEvent] = []
        self._done = asyncio.Condition()

    async def emit(self, event: SessionEvent) -> None:
        async with self._done:
            self.events.append(event)
            self._done.notify_all()

    async def until(self, kind: str, start: int) -> SessionEvent:
        """The first ``kind`` event from ``start`` on, once it is emitted."""
        async with self._done, asyncio.timeout(10):
            await self._done.wait_for(lambda: kind in kinds(self.events[start:]))
        return next(e for e in self.events[start:] if e.kind == kind)

    async def reply(self, session: CascadeSession, text: str = "Hi") -> list[SessionEvent]:
        """Type a turn and ask for a reply; the events from its start to its ``reply_done``."""
        start = len(self.events)
        session.add_user_text(text)
        await session.start_reply()
        await self.until("reply_done", start)
        return self.events[start:]


async def open_session(
    tmp: Path, make_runtime: RuntimeFactory, fallbacks: str
) -> tuple[Runtime, CascadeSession, Client, dict[str, FakeEngine]]:
    engines = fake_engines()
    config = load_config(config_file=session_config(tmp, fallbacks), environ={})
    runtime = make_runtime(config, writer=True, engines=dict(engines))
    client = Client()
    session = CascadeSession(runtime.session_deps(), client.emit)
    await session.open()
    return runtime, session, client, engines


def kinds(events: list[SessionEvent]) -> list[str]:
    return [e.kind for e in events]


def done(events: list[SessionEvent]) -> SessionEvent:
    (last,) = [e for e in events if e.kind == "reply_done"]
    assert events[-1] is last  # nothing of the reply comes after its end
    return last


def assert_server_error(event: SessionEvent, code: str) -> None:
    """An error the server caused: an engine's code and a message, not the client's fault."""
    assert event.kind == "error" and event.code == code and event.text
    assert event.code != InvalidInput.code


async def test_a_tts_dying_before_any_audio_is_replaced_and_the_reply_is_heard(
    tmp_path: Path, make_runtime: RuntimeFactory
) -> None:
    _, session, client, engines = await open_session(tmp_path, make_runtime, '{ tts = ["tts2"] }')
    broken = engines["tts"]
    assert isinstance(broken, FakeVoice)
    broken.fail_at, broken.fail_after = 0, 0  # the very first chunk of the reply

    events = await client.reply(session)
    assert done(events).status == "completed"
    assert "error" not in kinds(events)
    switch = next(e for e in events if e.kind == "fallback")
    assert switch.engines == ("tts", "tts", "tts2")
    audio = [e for e in events if e.kind == "reply_audio"]
    assert len(audio) == 4  # both sentences, two chunks each, from the fallback voice
    assert kinds(events).index("fallback") < kinds(events).index("reply_audio")
    texts = [e.text.strip() for e in events if e.kind == "reply_text"]
    assert texts == ["Hello there.", "How are you today?"]  # each sentence shown once
    assert done(events).text == SAID
    assert session.chains["tts"].current == "tts2"
    await session.close()


async def test_an_llm_dying_at_the_start_is_replaced_and_the_reply_is_heard(
    tmp_path: Path, make_runtime: RuntimeFactory
) -> None:
    _, session, client, engines = await open_session(tmp_path, make_runtime, '{ llm = ["llm2"] }')
    broken = engines["llm"]
    assert isinstance(broken, FakeChat)
    broken.chat_failures = 1

    events = await client.reply(session)
    assert done(events).status == "completed"
    assert "error" not in kinds(events)
    assert [e.engines for e in events if e.kind == "fallback"] == [("llm", "llm", "llm2")]
    assert len([e for e in events if e.kind == "reply_audio"]) == 4
    await session.close()


async def test_a_tts_dying_after_audio_was_sent_fails_the_reply_with_a_server_error(
    tmp_path: Path, make_runtime: RuntimeFactory
) -> None:
    _, session, client, engines = await open_session(tmp_path, make_runtime, '{ tts = ["tts2"] }')
    broken = engines["tts"]
    assert isinstance(broken, FakeVoice)
    broken.fail_at, broken.fail_after = 1, 0  # the second sentence, after the first was heard

    events = await client.reply(session)
    end = done(events)
    assert end.status == "failed"
    assert len([e for e in events if e.kind == "reply_audio"]) == 2  # only the first sentence
    (error,) = [e for e in events if e.kind == "error"]
    assert_server_error(error, EngineCallError.code)
    assert "tts" in error.text and "after" in error.text
    assert error.response_id == end.response_id
    assert end.text == "Hello there."  # the history keeps what was heard

    events = await client.reply(session)  # the next turn speaks with the fallback voice
    assert done(events).status == "completed"
    assert len([e for e in events if e.kind == "reply_audio"]) == 4
    await session.close()


async def test_an_exhausted_chain_ends_every_turn_and_the_session_recovers(
    tmp_path: Path, make_runtime: RuntimeFactory
) -> None:
    _, session, client, engines = await open_session(tmp_path, make_runtime, "{}")
    broken = engines["llm"]
    assert isinstance(broken, FakeChat)
    broken.chat_failures = 1

    first = await client.reply(session)
    assert done(first).status == "failed"
    assert_server_error(next(e for e in first if e.kind == "error"), EngineCallError.code)
    assert session.chains["llm"].current is None  # nothing left in the chain

    second = await client.reply(session)  # the engine is looked up with nothing to serve
    assert kinds(second)[0] == "reply_started"
    assert done(second).status == "failed"
    (error,) = [e for e in second if e.kind == "error"]
    assert_server_error(error, "no_engine_available")
    assert error.response_id == done(second).response_id

    await session.chains["llm"].probe()  # the engine works again: the session goes on
    third = await client.reply(session)
    assert done(third).status == "completed"
    assert len([e for e in third if e.kind == "reply_audio"]) == 4
    await session.close()


async def test_an_exhausted_asr_chain_still_answers_each_spoken_turn(
    tmp_path: Path, make_runtime: RuntimeFactory
) -> None:
    """A spoken turn with no ASR engine left says so, instead of dying in its task."""
    _, session, client, engines = await open_session(tmp_path, make_runtime, "{}")
    broken = engines["asr"]
    assert isinstance(broken, FakeAsr)
    broken.transcribe_failures = 1
    session.configure(instructions=None, voice=None, vad=None, vad_enabled=False)
    for expected in (EngineCallError.code, "no_engine_available"):
        start = len(client.events)
        await session.append_audio(np.zeros(16_000, np.int16).tobytes(), rate=16_000)
        await session.commit()
        error = await client.until("error", start)
        assert_server_error(error, expected)
    await session.close()


async def test_a_session_wakes_every_role_at_once(
    tmp_path: Path, make_runtime: RuntimeFactory
) -> None:
    """A session leases the VAD and each role's chain together: a wake takes the longest load,
    not the sum of them (the loads are held until every one has begun)."""
    engines = fake_engines()
    hold = asyncio.Event()
    for name in ("vad", "asr", "llm", "tts"):
        engines[name].hold = hold
    config = load_config(config_file=session_config(tmp_path, "{}"), environ={})
    runtime = make_runtime(config, writer=True, engines=dict(engines))
    session = CascadeSession(runtime.session_deps(), Client().emit)
    opening = asyncio.create_task(session.open())
    began = [engines[n].loading.wait() for n in ("vad", "asr", "llm", "tts")]
    async with asyncio.timeout(60):  # a bound for a broken session, not a timing assertion
        await asyncio.gather(*began)
    assert not opening.done()
    hold.set()
    await opening
    assert set(session.chains) == {"asr", "llm", "tts"}
    await session.close()
