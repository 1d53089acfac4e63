"""A voice session on the cascade: the coordinator of a listener and a responder.

The session is independent of any wire protocol: it reports what happens through ``emit``
with ``SessionEvent``s, and a front-end (``orchestrator.api.realtime``, or the duplex
session's cascade back-end) renders them. It holds a lease on its engines for as long as it
is open (an open session is activity: nothing it uses is unloaded under it), and the
hibernator hears when it opens and closes.

    client audio -> Listener (VAD, turns, partials) --turn--> transcribe (asr chain)
                                                                  |
    emit <- Responder (llm -> sentences -> tts, barge-in, truncate) <-+

The session owns the fallback chains of each role (an engine that fails is replaced, and
failed better ones are probed again), every task of its parts (one ``TaskSet``, cancelled on
close), and the conversation's history. It can be opened again after ``close``: the Realtime
front-end does that when a switch to the duplex back-end fails.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, aclosing, asynccontextmanager
from typing import Any

from orchestrator.fleet.fallback import NoEngine, RoleChain
from orchestrator.voice.boundary import Emit, SessionDeps, SessionEvent, TurnRefused
from orchestrator.voice.history import History
from orchestrator.voice.listener import IN_RATE, Audio, Listener
from orchestrator.voice.reply import Responder
from orchestrator.voice.turns import TurnSettings
from services.base import SpeechRecognizer, VoiceActivityDetector
from services.errors import EngineError, InvalidInput
from services.tasks import TaskSet
from services.translation import TextTranslator, UnsupportedLanguage, known_language, serves_pair
from services.vision import Image

log = logging.getLogger(__name__)


class CascadeSession:
    def __init__(self, deps: SessionDeps, emit: Emit, *, session_id: str | None = None) -> None:
        self.id = session_id or f"sess_{uuid.uuid4().hex[:16]}"
        self.deps = deps
        self.settings = deps.settings
        self.emit = emit
        self.instructions = self.settings.instructions
        self.history = History(self.instructions, budget_tokens=self.settings.history_tokens)
        self.chains: dict[str, RoleChain] = {}
        self.opened_at = time.time()
        self._stack = AsyncExitStack()
        self._tasks = TaskSet(f"cascade-session-{self.id}")
        self.replies = Responder(
            self.settings,
            self.history,
            self.chains,
            emit,
            self._tasks,
            failover=self._failover,
            metrics=deps.metrics,
            lease_translator=self._lease_translator,
        )
        self.listener = Listener(
            self.settings,
            emit,
            self._tasks,
            recognizer=self._recognizer,
            on_speech=self.replies.barge_in,
            on_turn=self._answer,
        )

    @property
    def voice(self) -> str | None:
        return self.replies.voice

    @property
    def server_vad(self) -> bool:
        return self.listener.server_vad

    @property
    def turn_settings(self) -> TurnSettings:
        return self.listener.turn_settings

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Lease the VAD and the best engine of each role's chain (waking them if needed)."""
        s, deps = self.settings, self.deps
        fallbacks: dict[str, tuple[str, ...]] = {str(k): v for k, v in s.fallbacks.items()}
        primaries = {"asr": s.asr, "llm": s.llm, "tts": s.tts}
        chains = {role: [name, *fallbacks.get(role, ())] for role, name in primaries.items()}
        names = [s.vad, *(n for chain in chains.values() for n in chain)]
        missing = [n for n in names if n not in deps.fleet.names]
        if missing:
            raise InvalidInput(f"the cascade needs engines that are not configured: {missing}")

        on_waking = self._on_waking
        timeout = deps.wake_timeout_s
        built = {
            role: RoleChain(
                role,
                candidates,
                deps.fleet,
                timeout_s=timeout,
                on_switch=self._switched,
                on_waking=on_waking,
            )
            for role, candidates in chains.items()
        }
        for chain in built.values():
            self._stack.push_async_callback(chain.close)
        # every role at once: a wake takes the longest load, not the sum of them (the fleet
        # admits each load on its own, as it does for concurrent requests)
        vad_lease = deps.fleet.lease([s.vad], timeout_s=timeout, on_waking=on_waking)
        opened = await asyncio.gather(
            self._stack.enter_async_context(vad_lease),
            *(chain.open() for chain in built.values()),
            return_exceptions=True,
        )
        if failed := next((r for r in opened if isinstance(r, BaseException)), None):
            raise failed  # the first in role order (vad, asr, llm, tts); the rest close with us
        engines = opened[0]
        assert isinstance(engines, dict)
        self.chains.update(built)
        if any(len(c.names) > 1 for c in self.chains.values()):
            self._tasks.spawn("probe", self._probe_failed_engines())
        deps.activity.session_opened(self.id)
        deps.registry[self.id] = self
        self._stack.callback(deps.registry.pop, self.id, None)
        self._stack.callback(deps.activity.session_closed, self.id)
        vad = engines[s.vad]
        assert isinstance(vad, VoiceActivityDetector)
        self.listener.attach(vad)

    def _on_waking(self, engines: list[str]) -> None:
        async def waking() -> None:
            await self.emit(SessionEvent("waking", engines=tuple(engines)))

        self._tasks.spawn("waking", waking())

    async def _open_vision(self) -> None:
        """Lease the VLM (``sessions.vlm``) the first time the user shows an image: it answers
        while the history holds one, and stays leased until the session closes."""
        if "vlm" in self.chains:
            return
        name = self.settings.vlm
        if name not in self.deps.fleet.names:
            raise TurnRefused(
                f"this server has no vision-language engine to read images (sessions.vlm = "
                f"{name!r} is not configured)",
                "images_not_supported",
            )
        chain = RoleChain(
            "vlm",
            [name],
            self.deps.fleet,
            timeout_s=self.deps.wake_timeout_s,
            on_switch=self._switched,
            on_waking=self._on_waking,
        )
        self._stack.push_async_callback(chain.close)
        await chain.open()
        self.chains["vlm"] = chain

    async def close(self) -> None:
        """Stop the reply, every task, and give the leases back."""
        await self.replies.cancel()
        await self._tasks.cancel_all()
        await self._stack.aclose()

    def summary(self) -> dict[str, Any]:
        """What the console shows: back-end, engines serving each role, and turn latencies."""
        turns = self.replies.turn_metrics
        return {
            "id": self.id,
            "backend": "cascade",
            "opened_at": self.opened_at,
            "engines": {role: chain.current for role, chain in self.chains.items()},
            "failed": {role: dict(chain.failed) for role, chain in self.chains.items()},
            "turns": len(turns),
            "last_turn": turns[-1] if turns else None,
            "history_tokens": self.history.tokens,
        }

    def configure(
        self,
        *,
        instructions: str | None,
        voice: str | None,
        vad: dict[str, Any] | None,
        vad_enabled: bool | None,
        reply_language: str | None = None,
    ) -> None:
        """Change what ``session.update`` gave; None keeps a setting, ``""`` turns
        ``voice`` or ``reply_language`` off. A language no translation model knows, or one
        the loaded translation engine cannot reach, is refused before anything changes."""
        if reply_language:
            reply_language = self._reachable(reply_language)
        if reply_language is not None:
            self.replies.reply_language = reply_language or None
        if instructions is not None:
            self.instructions = instructions
            self.history.system = type(self.history.system)("system", instructions)
        if voice is not None:
            self.replies.voice = voice or None
        self.listener.configure(vad=vad, vad_enabled=vad_enabled)

    def _reachable(self, code: str) -> str:
        """``code`` as the translation role writes it, if the session's translation engine
        (as far as it has said: once loaded) reaches it from ``reply_source_language``."""
        target = known_language(code, "session.reply_language")
        source, name = self.settings.reply_source_language, self.settings.translation
        engine = self.deps.fleet.engine(name) if name in self.deps.fleet.names else None
        if isinstance(engine, TextTranslator) and not serves_pair(
            engine.languages(), source, target
        ):
            error = UnsupportedLanguage(
                f"the translation engine {name!r} does not translate {source} to {target}"
            )
            error.param = "session.reply_language"
            raise error
        return target

    @asynccontextmanager
    async def _lease_translator(self) -> AsyncIterator[TextTranslator]:
        """The translation engine for one reply in ``reply_language``, woken if needed."""
        name, deps = self.settings.translation, self.deps
        if name not in deps.fleet.names:
            raise NoEngine(
                f"reply_language needs a translation engine named {name!r}"
                " ([sessions] translation)",
                engine=name,
            )
        async with deps.fleet.lease([name], timeout_s=deps.wake_timeout_s) as engines:
            engine = engines[name]
            assert isinstance(engine, TextTranslator)
            yield engine

    # -- fallback ----------------------------------------------------------------------------

    async def _switched(self, role: str, source: str | None, target: str, why: str) -> None:
        log.warning("session %s: %s %s -> %s (%s)", self.id, role, source, target, why)
        self.deps.metrics.fallback_switch(role, source or "", target)
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

    # -- turns -------------------------------------------------------------------------------

    async def append_audio(self, pcm16: bytes, rate: int = IN_RATE) -> None:
        """Take PCM16 mono audio; with server VAD on, turns are found and answered."""
        await self.listener.append(pcm16, rate)

    async def commit(self) -> None:
        """End the user's turn now (push-to-talk); ``TurnRefused`` when nothing was heard."""
        await self.listener.commit()

    def clear(self) -> None:
        self.listener.clear()

    def _recognizer(self) -> SpeechRecognizer:
        asr = self.chains["asr"].engine
        assert isinstance(asr, SpeechRecognizer)
        return asr

    async def _answer(self, audio: Audio, stopped: float, reply: bool) -> None:
        """A turn ended: transcribe it (switching ASR engines on failure), then reply when the
        server detected the turn (``reply``; with push-to-talk the client asks for it)."""
        item_id = f"item_{uuid.uuid4().hex[:16]}"
        while True:
            try:  # a chain with nothing left raises NoEngine here: the turn still says so
                asr = self._recognizer()
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
        if reply:
            await self.replies.start(turn_started=stopped, transcribed=transcribed)

    def add_user_text(self, text: str) -> str:
        self.history.add("user", text)
        return f"item_{uuid.uuid4().hex[:16]}"

    async def add_user_images(self, text: str, images: tuple[Image, ...]) -> str:
        """A user's photos (and words): the next replies are the VLM's, which sees them."""
        await self._open_vision()
        self.history.add("user", text, images)
        return f"item_{uuid.uuid4().hex[:16]}"

    def add_assistant_text(self, text: str) -> str:
        """An assistant turn the client carries over (said before, elsewhere): history only."""
        self.history.add("assistant", text)
        return f"item_{uuid.uuid4().hex[:16]}"

    # -- replies -----------------------------------------------------------------------------

    async def start_reply(self) -> None:
        """The client asks for a reply: ``TurnRefused`` while one runs. It answers the turns
        committed before it, once they are transcribed."""
        await self.replies.start(requested=True, after=self.listener.pending_turns())

    async def cancel_reply(self) -> None:
        """The client cancels the reply: ``TurnRefused`` when none is running."""
        if not await self.replies.cancel():
            raise TurnRefused(
                "Cancellation failed: no active response found", "response_cancel_not_active"
            )

    def truncate(self, item_id: str, audio_end_ms: int) -> None:
        """The client played only ``audio_end_ms`` of a reply: keep only those sentences."""
        self.replies.truncate(item_id, audio_end_ms)


__all__ = ["CascadeSession"]
