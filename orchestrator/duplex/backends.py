"""The two back-ends of a full-duplex session, behind one small interface.

Both take 80 ms frames of mono float32 audio at 24 kHz (``send``) and give audio frames and text
pieces to a ``Sink``; a duplex engine that speaks Ogg Opus also takes the client's own Ogg Opus
stream as it came (``send_ogg``) and hands its pages on with the audio, so that ``/v1/duplex``
does not encode the audio again either way. ``failed`` resolves with a reason when the back-end
breaks; the session then moves to the other one.

- ``DuplexBackend``: a conversation with the duplex engine, under a lease (never unloaded by
  the ladder or the planner meanwhile). It fails when the server closes or the connection breaks
  (crash, process stopped) or when audio sent ``hang_timeout_s`` ago is still unanswered (hang).
- ``CascadeBackend``: a ``CascadeSession`` answering frame for frame: the reply's audio when
  there is some, else silence, as the duplex model would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from contextlib import AsyncExitStack
from typing import Any, Protocol, cast

import numpy as np

from orchestrator.voice.boundary import SessionDeps, SessionEvent
from orchestrator.voice.session import CascadeSession
from services.base import AudioOut, DuplexConnection, DuplexModel, Pcm, Persona
from services.duplex_protocol import FRAME_SAMPLES
from services.errors import EngineError, EngineLoadError
from services.ogg import OggOpusInput
from services.tasks import TaskSet

log = logging.getLogger(__name__)
SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.float32)


class Sink(Protocol):
    """Where a back-end's output goes (the session, which hands it to the front-end)."""

    async def audio(self, frame: Pcm, ogg: bytes = b"") -> None:
        """Audio out; ``ogg``: the engine's Ogg Opus pages it was decoded from, if any."""

    async def text(self, piece: str) -> None: ...


class DuplexBackend:
    kind = "duplex"

    def __init__(self, engine: str, connection: DuplexConnection, stack: AsyncExitStack,
                 sink: Sink, hang_timeout_s: float) -> None:  # fmt: skip
        self.engine = engine
        self.connection = connection
        self._stack = stack
        self._sink = sink
        self._hang_s = hang_timeout_s
        self._unanswered: deque[float] = deque()  # send time of each frame not yet answered
        self._received = 0
        self._progress = asyncio.Event()
        self.failed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.last_audio_at: float | None = None
        self._tasks = TaskSet(f"duplex-{engine}")
        self._tasks.spawn("listen", self._listen())
        self._tasks.spawn("watch", self._watch())

    @classmethod
    async def open(
        cls, deps: SessionDeps, engine: str, persona: Persona, sink: Sink, hang_timeout_s: float
    ) -> DuplexBackend:
        """Lease the engine (loading it if needed) and start a conversation with it."""
        stack = AsyncExitStack()
        try:
            leased = await stack.enter_async_context(
                deps.fleet.lease([engine], timeout_s=deps.wake_timeout_s)
            )
            model = leased[engine]
            if not isinstance(model, DuplexModel):
                raise EngineLoadError("not a duplex engine", engine=engine)
            connection = await model.open_session(persona)
            stack.push_async_callback(connection.close)
        except BaseException:
            await stack.aclose()
            raise
        return cls(engine, connection, stack, sink, hang_timeout_s)

    @property
    def takes_ogg(self) -> bool:
        """The engine can hear the client's Ogg Opus stream itself (``send_ogg``)."""
        return isinstance(self.connection, OggOpusInput)

    async def send(self, frame: Pcm) -> None:
        self._sent(1)
        await self.connection.send_frame(frame)

    async def send_ogg(self, ogg: bytes, frames: int) -> None:
        """The client's Ogg Opus bytes, holding ``frames`` whole 80 ms frames (``takes_ogg``;
        not checked here: a protocol's isinstance costs more than the rest of a frame)."""
        self._sent(frames)
        await cast(OggOpusInput, self.connection).send_ogg(ogg, frames * FRAME_SAMPLES)

    def _sent(self, frames: int) -> None:
        now = asyncio.get_running_loop().time()
        self._unanswered.extend([now] * frames)
        self._progress.set()

    async def _listen(self) -> None:
        try:
            while True:
                output = await self.connection.receive()
                if isinstance(output, AudioOut):
                    self._received += len(output.pcm)
                    while self._unanswered and self._received >= FRAME_SAMPLES:
                        self._unanswered.popleft()
                        self._received -= FRAME_SAMPLES
                    self.last_audio_at = asyncio.get_running_loop().time()
                    self._progress.set()
                    await self._sink.audio(output.pcm, output.ogg)
                else:
                    await self._sink.text(output.text)
        except EngineError as exc:
            self.fail(exc.message)

    async def _watch(self) -> None:
        """Fail when the oldest unanswered frame is ``hang_timeout_s`` old (a loop-owned timer
        that wakes on every frame sent or answered, never a polling loop)."""
        loop = asyncio.get_running_loop()
        while not self.failed.done():
            wait: float | None = None
            if self._unanswered:
                wait = self._unanswered[0] + self._hang_s - loop.time()
                if wait <= 0:
                    self.fail(f"no audio back for {self._hang_s:g} s: the server hangs")
                    return
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._progress.wait()

    def fail(self, reason: str) -> None:
        """Mark the conversation failed (once); the session moves on."""
        if not self.failed.done():
            log.warning("%s: conversation failed: %s", self.engine, reason)
            self.failed.set_result(reason)

    async def drain_tail(self) -> None:
        await self.connection.drain_tail()

    async def close(self) -> None:
        """Stop listening, close the socket and give the lease back."""
        await self._tasks.cancel_all(grace_s=2.0)
        await self._stack.aclose()

    def summary(self) -> dict[str, Any]:
        return {"engine": self.engine, "unanswered_frames": len(self._unanswered)}


class CascadeBackend:
    kind = "cascade"

    def __init__(self, deps: SessionDeps, session_id: str, instructions: str, sink: Sink) -> None:
        self.session = CascadeSession(deps, self._on_event, session_id=session_id)
        self.session.configure(instructions=instructions, voice=None, vad=None, vad_enabled=True)
        self._sink = sink
        self._outgoing: deque[Pcm] = deque()
        self._partial = np.zeros(0, dtype=np.float32)
        # the cascade has fallback chains of its own: nothing to fail over to from here
        self.failed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def start(self) -> None:
        """Lease the cascade's engines (waking them if needed)."""
        await self.session.open()

    async def _on_event(self, event: SessionEvent) -> None:
        if event.kind == "reply_audio":
            samples = np.frombuffer(event.audio, dtype=np.int16).astype(np.float32) / 32768.0
            joined = np.concatenate([self._partial, samples])
            usable = len(joined) // FRAME_SAMPLES * FRAME_SAMPLES
            for start in range(0, usable, FRAME_SAMPLES):
                self._outgoing.append(joined[start : start + FRAME_SAMPLES])
            self._partial = joined[usable:]
        elif event.kind == "reply_text" and event.text:
            await self._sink.text(event.text)
        elif event.kind == "speech_started":
            self._outgoing.clear()  # barge-in: stop talking at once
            self._partial = np.zeros(0, dtype=np.float32)

    async def send(self, frame: Pcm, *, answer: bool = True) -> None:
        """Feed a frame; answer it with one frame of the reply, or silence."""
        pcm16 = (np.clip(frame, -1, 1) * 32767).astype(np.int16).tobytes()
        await self.session.append_audio(pcm16)
        if answer:
            await self._sink.audio(self._outgoing.popleft() if self._outgoing else SILENCE)

    async def drain_tail(self) -> None:
        return None

    async def close(self) -> None:
        await self.session.close()

    def summary(self) -> dict[str, Any]:
        return self.session.summary()
