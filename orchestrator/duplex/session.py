"""One full-duplex conversation, whatever serves it: routed at open, moved on failure.

A front-end (``/v1/duplex``, or a Realtime session that asked for the duplex back-end) feeds
audio in and gets audio frames and text out through its ``FrontEnd``. The router picks the
back-end. When the duplex back-end fails (the server crashed, hangs, or was stopped) the
session moves to the cascade:

    duplex --failed(reason)--> switching --cascade open--> cascade
                                        \\--cannot open--> ended (the front-end closes)

While it switches, every frame that arrives is answered with silence at once (the client's
playback stays in step) and kept; the cascade then hears those frames, and its instructions
carry what the duplex model said so far. The move is published on the bus as
``session.failover`` with its gap and listed in the session's summary.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from orchestrator.duplex.backends import SILENCE, CascadeBackend, DuplexBackend
from orchestrator.duplex.routing import DuplexRouter, DuplexUnavailable, Route
from orchestrator.voice.boundary import SessionDeps
from services.base import DuplexModel, Pcm
from services.duplex_protocol import FRAME_SAMPLES
from services.errors import EngineError, InvalidInput
from services.tasks import TaskSet

log = logging.getLogger(__name__)


class FrontEnd(Protocol):
    """The client side: where output goes, and how the session ends it."""

    async def audio(self, frame: Pcm, ogg: bytes = b"") -> None:
        """Audio out; ``ogg``: the duplex engine's Ogg Opus pages it was decoded from, if any
        (a front-end that speaks Ogg Opus sends them on instead of encoding ``frame``)."""

    async def text(self, piece: str) -> None: ...

    async def end(self, reason: str) -> None: ...


class DuplexSession:
    def __init__(
        self,
        deps: SessionDeps,
        router: DuplexRouter,
        front: FrontEnd,
        *,
        text_prompt: str | None,
        voice_prompt: str | None,
        protocol: str = "duplex",
        session_id: str | None = None,
    ) -> None:
        self.id = session_id or f"sess_{uuid.uuid4().hex[:16]}"
        self.deps = deps
        self.router = router
        self.front = front
        self.protocol = protocol
        self.text_prompt = (text_prompt or "").strip()
        self.voice_prompt = voice_prompt
        if not self.text_prompt:
            raise InvalidInput("text_prompt is required and must not be empty")
        self.backend: DuplexBackend | CascadeBackend | None = None
        self.route: Route | None = None
        self.transcript: list[str] = []  # the duplex model's words so far (its 0x02 pieces)
        self.failovers: list[dict[str, Any]] = []
        self.frames_in = 0
        self._samples_out = 0
        self.opened_at = time.time()
        self._pending = np.zeros(0, dtype=np.float32)
        self._held: list[Pcm] | None = None  # frames that came while switching
        self._ogg_in: bool | None = None  # the duplex engine hears the client's own Ogg stream
        self._ogg_samples = 0  # of the client's Ogg audio, short of a whole frame
        self._tasks = TaskSet(f"duplex-session-{self.id}")
        self._registered = False

    # -- lifecycle ---------------------------------------------------------------------------

    def claim(self) -> Route:
        """Decide the back-end now (a duplex route holds the engine's one slot); raises
        DuplexUnavailable under ``duplex-only`` when the engine cannot take the session."""
        self.route = self.router.route(self.id)
        return self.route

    async def start(self) -> None:
        """Start the chosen back-end. Raises InvalidInput (bad persona) or another
        EngineError, WakeTimeout included (nothing could serve the session)."""
        route = self.route or self.claim()
        try:
            if route.backend == "duplex":
                await self._open_duplex()
            else:
                await self._open_cascade("")
        except BaseException:
            self.router.release(self.id)
            raise
        self.deps.registry[self.id] = self  # after the cascade's own registration
        self.deps.activity.session_opened(self.id)
        self._registered = True
        assert self.backend is not None and self.route is not None
        self.deps.bus.publish(
            "session.routed",
            session=self.id,
            protocol=self.protocol,
            backend=self.backend.kind,
            reason=self.route.reason,
        )
        self._tasks.spawn("watch", self._watch())

    async def _open_duplex(self) -> None:
        name = self.router.engine_name
        assert name is not None
        engine = self.deps.fleet.engine(name)
        if not isinstance(engine, DuplexModel):
            raise InvalidInput(f"engine {name} does not serve the duplex role")
        persona = engine.persona(self.text_prompt, self.voice_prompt)
        try:
            self.backend = await DuplexBackend.open(
                self.deps, name, persona, self, self.router.config.hang_timeout_s
            )
        except EngineError as exc:
            if self.router.config.policy == "duplex-only" or isinstance(exc, InvalidInput):
                raise
            self.router.release(self.id)
            log.warning(
                "session %s: %s unavailable (%s): the cascade serves it", self.id, name, exc
            )
            self.route = Route("cascade", f"the duplex engine could not start: {exc}")
            await self._open_cascade("")

    async def _open_cascade(self, said: str) -> None:
        instructions = self.text_prompt
        if said:
            instructions += (
                "\n\nYou are taking over a spoken conversation mid-way. So far you said: "
                f'"{said}". Continue it naturally; do not start over.'
            )
        backend = CascadeBackend(self.deps, self.id, instructions, self)
        await backend.start()
        self.backend = backend

    async def close(self) -> None:
        """End the conversation: back-end closed, slot released, nothing left running."""
        await self._tasks.cancel_all(grace_s=2.0)
        backend, self.backend = self.backend, None
        if backend is not None:
            await backend.close()
        self.router.release(self.id)
        if self._registered:
            self.deps.registry.pop(self.id, None)
            self.deps.activity.session_closed(self.id)
            self._registered = False
            self.deps.bus.publish(
                "session.closed",
                session=self.id,
                protocol=self.protocol,
                failovers=len(self.failovers),
            )

    # -- audio in ----------------------------------------------------------------------------

    @property
    def hears_ogg(self) -> bool:
        """The duplex engine hears the client's own Ogg Opus stream (``feed_ogg``), so the
        client's audio need not be decoded; decided at the first audio, for the engine's
        whole conversation (it hears one stream)."""
        backend = self.backend
        if self._held is not None or not isinstance(backend, DuplexBackend):
            return False
        if self._ogg_in is None:
            self._ogg_in = backend.takes_ogg
        return self._ogg_in

    async def feed(self, pcm: Pcm) -> None:
        """Mono float32 audio at 24 kHz, any length; sent on in 80 ms frames."""
        self._pending = np.concatenate([self._pending, np.asarray(pcm, dtype=np.float32)])
        while len(self._pending) >= FRAME_SAMPLES:
            frame, self._pending = self._pending[:FRAME_SAMPLES], self._pending[FRAME_SAMPLES:]
            await self._send(frame)

    async def feed_ogg(self, ogg: bytes, samples: int, decode: Callable[[], Pcm | None]) -> None:
        """The client's Ogg Opus bytes, ``samples`` of audio at 24 kHz, to the duplex engine as
        they came while ``hears_ogg``; ``decode`` gives their audio when the engine cannot take
        them (then they are fed as audio: kept for the cascade, answered with silence)."""
        backend = self.backend
        if not self.hears_ogg:
            if (pcm := decode()) is not None:
                await self.feed(pcm)
            return
        assert isinstance(backend, DuplexBackend)
        frames, rest = divmod(self._ogg_samples + samples, FRAME_SAMPLES)
        try:
            await backend.send_ogg(ogg, frames)
        except EngineError as exc:
            backend.fail(exc.message)
            self._held = []  # the watcher moves the session; keep what comes meanwhile
            if (pcm := decode()) is not None:
                await self.feed(pcm)
            return
        self._ogg_samples = rest
        self.frames_in += frames

    async def _send(self, frame: Pcm) -> None:
        self.frames_in += 1
        backend = self.backend
        if self._held is None and backend is not None:
            try:
                await backend.send(frame)
                return
            except EngineError as exc:
                if not isinstance(backend, DuplexBackend):
                    raise
                backend.fail(exc.message)
                self._held = []  # the watcher moves the session; keep what comes meanwhile
        if self._held is not None:
            self._held.append(frame)
            await self.audio(SILENCE)  # in step while the cascade comes up

    # -- output (the back-ends' sink) --------------------------------------------------------

    @property
    def frames_out(self) -> int:
        return self._samples_out // FRAME_SAMPLES

    async def audio(self, frame: Pcm, ogg: bytes = b"") -> None:
        self._samples_out += len(frame)
        await self.front.audio(frame, ogg)

    async def text(self, piece: str) -> None:
        if isinstance(self.backend, DuplexBackend):
            self.transcript.append(piece)
        await self.front.text(piece)

    # -- failover ----------------------------------------------------------------------------

    async def _watch(self) -> None:
        backend = self.backend
        assert backend is not None
        reason = await backend.failed
        if not isinstance(backend, DuplexBackend):
            return
        if not self.router.config.failover:
            await self.front.end(f"the duplex engine failed: {reason}")
            return
        await self._fail_over(backend, reason)

    async def _fail_over(self, old: DuplexBackend, reason: str) -> None:
        loop = asyncio.get_running_loop()
        detected = loop.time()
        if self._held is None:
            self._held = []
        await old.close()
        self.router.release(self.id)
        for _ in range(max(0, self.frames_in - self.frames_out)):
            await self.audio(SILENCE)  # frames the dead server never answered
        said = "".join(self.transcript).strip()
        try:
            await self._open_cascade(said)
        except EngineError as exc:
            self.backend = None
            await self.front.end(f"the duplex engine failed ({reason}) and the cascade too: {exc}")
            return
        cascade = self.backend
        assert isinstance(cascade, CascadeBackend)
        self.deps.registry[self.id] = self  # the cascade registered itself under our id
        served = loop.time()
        last = old.last_audio_at or detected
        record = {
            "at": time.time(),
            "source": "duplex",
            "target": "cascade",
            "engine": old.engine,
            "reason": reason,
            "detect_s": round(detected - last, 3),
            "switch_s": round(served - detected, 3),
            "gap_s": round(served - last, 3),
            "context_chars": len(said),
        }
        self.failovers.append(record)
        log.warning("session %s: on the cascade after %.2f s (%s)", self.id, served - last, reason)
        self.deps.bus.publish("session.failover", session=self.id, **record)
        while self._held:  # what the user said meanwhile (already answered with silence)
            held, self._held = self._held, []
            for frame in held:
                await cascade.send(frame, answer=False)
        self._held = None
        self._tasks.spawn("watch", self._watch())

    # -- what the console sees ---------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        backend = self.backend
        return {
            "id": self.id,
            "protocol": self.protocol,
            "backend": backend.kind if backend is not None else "switching",
            "route_reason": self.route.reason if self.route else "",
            "opened_at": self.opened_at,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "transcript_chars": sum(len(piece) for piece in self.transcript),
            "failovers": list(self.failovers),
            "detail": backend.summary() if backend is not None else {},
        }


__all__ = ["DuplexSession", "DuplexUnavailable", "FrontEnd"]
