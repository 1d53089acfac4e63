"""A ``/v1/realtime`` connection on the full-duplex back-end (``session.backend = "duplex"``).

The client asks with ``session.update`` (beta or GA shape) before the conversation starts::

    {"type": "session.update", "session": {"backend": "duplex",
        "instructions": "You are a patient maths tutor.", "voice": "NATF2"}}

``instructions`` (required, non-empty; or set by an earlier update) become the persona's text
prompt; ``voice`` (or GA ``audio.output.voice``) names one of the duplex engine's voices, with or
without its ``.pt``, else the engine's default voice is used. The connection's cascade session
is closed (its leases released) and a ``DuplexSession`` routed like ``/v1/duplex`` takes over:
the duplex engine when it is free, else the cascade, answering frame for frame either way.
The connection decides when to switch and owns the outcome; this back-end sees it only as a
``wire.ClientLink`` (a way to send and to close), so the two modules do not import each other.

What changes in the protocol:

- ``input_audio_buffer.append``: base64 PCM16 mono at 24 kHz, streamed on continuously (send
  silence while muted: the model's clock is the audio).
- The conversation is one continuous response: ``response.created`` once the session runs, then
  ``response.audio.delta`` (GA ``response.output_audio.delta``) with each 80 ms output frame that
  is not digital silence, ``response.audio_transcript.delta`` with the model's words, and
  ``response.done`` when the session ends (``failed`` with the reason when nothing can serve it
  any more; the socket is then closed with code 1011).
- ``session.updated`` says ``backend: "duplex"`` and who serves it: ``served_by`` (``duplex`` or
  ``cascade``), ``engine`` and ``route_reason``. When the duplex engine fails mid-session and
  the cascade takes over, our event ``session.backend_changed`` (source, target, reason, gap_s)
  is sent, then a new ``session.updated``.
- Turn-based events (``input_audio_buffer.commit|clear``, ``conversation.item.create|truncate``,
  ``response.create|cancel``) and further ``session.update`` get an ``error`` event (codes
  ``not_in_duplex``, ``session_fixed``); the session goes on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import uuid
from typing import Any

import numpy as np
import numpy.typing as npt

from orchestrator.api.realtime.events import InputAudioBufferAppend, SessionUpdate
from orchestrator.api.realtime.wire import (
    ClientLink,
    Refused,
    content_ids,
    response_object,
    server_event,
)
from orchestrator.app.runtime import Runtime
from orchestrator.core.events import Subscription
from orchestrator.duplex.routing import DuplexRouter, DuplexUnavailable
from orchestrator.duplex.session import DuplexSession
from services.base import DuplexModel, Pcm
from services.duplex_protocol import FRAME_SAMPLES
from services.errors import InvalidInput
from services.tasks import TaskSet

log = logging.getLogger(__name__)


def voice_prompt(router: DuplexRouter, text_prompt: str, voice: str | None) -> str | None:
    """The duplex engine's voice file for a Realtime ``voice``, or None for its default."""
    name = router.engine_name
    engine = router.fleet.engine(name) if name is not None else None
    if not isinstance(engine, DuplexModel):
        return None
    wanted = [voice, f"{voice}.pt"] if voice else []
    for candidate in [*wanted, None]:
        with contextlib.suppress(InvalidInput):
            return engine.persona(text_prompt, candidate).voice_prompt
    return None


def refusal(kind: str) -> Refused | None:
    """Why a client event of this type does not apply to a running duplex session (None: it
    does). Decided on the type alone: the content of a turn-based event does not matter."""
    if kind == InputAudioBufferAppend.TYPE:
        return None
    if kind == SessionUpdate.TYPE:
        return Refused(
            "a duplex session's persona is fixed once it runs: open a new connection to change it",
            "session_fixed",
        )
    return Refused(
        f"{kind} does not apply to a full-duplex session: the model listens and speaks "
        "continuously; stream input_audio_buffer.append",
        "not_in_duplex",
    )


class RealtimeDuplex:
    """The ``FrontEnd`` of a DuplexSession that speaks Realtime events on a connection."""

    def __init__(
        self, link: ClientLink, runtime: Runtime, text_prompt: str, voice: str | None
    ) -> None:
        self.link = link
        self.text_prompt = text_prompt
        self.voice = voice
        self.session: DuplexSession | None = None
        self.response_id = f"resp_{uuid.uuid4().hex[:20]}"
        self.item_id = f"item_{uuid.uuid4().hex[:20]}"
        self.said: list[str] = []
        self._out = np.zeros(0, dtype=np.int16)  # output short of a whole frame
        self._running = asyncio.Event()  # output waits until response.created is out
        self._done = False
        self._tasks = TaskSet("realtime-duplex")
        # subscribed before the session starts, so that no failover can go unseen
        self._bus: Subscription = runtime.bus.subscribe()

    @classmethod
    def claim(
        cls,
        link: ClientLink,
        runtime: Runtime,
        router: DuplexRouter,
        *,
        instructions: str | None,
        voice: str | None,
        session_id: str,
    ) -> RealtimeDuplex:
        """A back-end holding the router's slot for this session; Refused when the persona
        is incomplete or nothing can serve it. ``start`` runs it."""
        text_prompt = instructions.strip() if instructions is not None else ""
        if not text_prompt:
            raise Refused(
                "session.backend 'duplex' needs non-empty 'instructions': they are the duplex "
                "model's text prompt",
                "invalid_input",
                "session.instructions",
            )
        chosen = voice_prompt(router, text_prompt, voice)
        bridge = cls(link, runtime, text_prompt, chosen)
        session = DuplexSession(
            runtime.session_deps(),
            router,
            bridge,
            text_prompt=text_prompt,
            voice_prompt=chosen,
            protocol="realtime",
            session_id=session_id,
        )
        try:
            session.claim()
        except DuplexUnavailable as exc:
            bridge._bus.close()
            raise Refused(str(exc), exc.code, "session.backend", status=exc.status) from None
        bridge.session = session
        return bridge

    async def start(self) -> None:
        """Start the session (EngineError when it cannot), then tell the
        client who serves it and open the one continuous response."""
        assert self.session is not None
        await self.session.start()
        log.info(
            "realtime session %s on the %s", self.session.id, self.session.summary()["backend"]
        )
        await self._begin()

    async def append(self, event: InputAudioBufferAppend) -> None:
        """Client audio, fed to the model as it comes (the model's clock is the audio)."""
        samples = np.frombuffer(event.pcm, dtype=np.int16).astype(np.float32) / 32768.0
        if self.session is not None:
            await self.session.feed(samples)

    # -- the session's output (FrontEnd) -----------------------------------------------------

    async def audio(self, frame: Pcm, ogg: bytes = b"") -> None:
        """Output in 80 ms deltas: the duplex engine's Opus pages decode in smaller pieces
        (PCM16 on this protocol: its Ogg pages are not used)."""
        await self._running.wait()
        pcm16 = (np.clip(frame, -1, 1) * 32767).astype(np.int16)
        self._out = np.concatenate([self._out, pcm16])
        while len(self._out) >= FRAME_SAMPLES:
            whole, self._out = self._out[:FRAME_SAMPLES], self._out[FRAME_SAMPLES:]
            await self._delta(whole)

    async def _delta(self, pcm16: npt.NDArray[np.int16]) -> None:
        if not pcm16.any():
            return  # digital silence: the cascade between replies, a failover's gap
        delta = base64.b64encode(pcm16.tobytes()).decode()
        await self.link.send(server_event("response.audio.delta", delta=delta, **self._ids()))

    async def text(self, piece: str) -> None:
        await self._running.wait()
        self.said.append(piece)
        await self.link.send(
            server_event("response.audio_transcript.delta", delta=piece, **self._ids())
        )

    async def end(self, reason: str) -> None:
        """Nothing can serve the session any more: say so, then close the socket."""
        await self._finish("failed", reason)
        await self.link.error(f"the duplex session ended: {reason}", "session_failed", status=503)
        await self.link.close(1011, reason[:120].encode())

    # -- lifecycle ---------------------------------------------------------------------------

    async def _begin(self) -> None:
        await self.link.send(server_event("session.updated", session=self.view()))
        await self.link.send(
            server_event("response.created", response=self._response("in_progress"))
        )
        self._running.set()
        self._tasks.spawn("failovers", self._relay_failovers())

    async def _relay_failovers(self) -> None:
        """Tell the client when its session moved to another back-end."""
        assert self.session is not None
        async for event in self._bus:
            if event.type != "session.failover" or event.data.get("session") != self.session.id:
                continue
            data = event.data
            await self.link.send(
                server_event(
                    "session.backend_changed",
                    source=data["source"],
                    target=data["target"],
                    reason=data["reason"],
                    gap_s=data["gap_s"],
                )
            )
            await self.link.send(server_event("session.updated", session=self.view()))

    async def close(self) -> None:
        """End the session (shielded by the caller): tasks, session, lease and slot, then
        ``response.done`` if the socket is still open."""
        self._bus.close()
        await self._tasks.cancel_all(grace_s=2.0)
        if self.session is not None:
            await self.session.close()
        if self._running.is_set():
            with contextlib.suppress(ConnectionError):
                await self._finish("completed")

    async def _finish(self, status: str, reason: str | None = None) -> None:
        if self._done:
            return
        self._done = True
        tail, self._out = self._out, self._out[:0]
        await self._delta(tail)
        transcript = "".join(self.said)
        await self.link.send(server_event("response.audio.done", **self._ids()))
        await self.link.send(
            server_event("response.audio_transcript.done", transcript=transcript, **self._ids())
        )
        await self.link.send(server_event("response.done", response=self._response(status, reason)))

    # -- views -------------------------------------------------------------------------------

    def view(self) -> dict[str, Any]:
        """The ``session`` object of ``session.updated``, with who serves the session."""
        session = self.session
        summary = session.summary() if session is not None else {}
        return {
            **({"type": "realtime"} if self.link.ga else {}),
            "id": session.id if session is not None else None,
            "object": "realtime.session",
            "model": "voice-orchestrator-duplex",
            "modalities": ["audio", "text"],
            "instructions": self.text_prompt,
            "voice": self.voice or "default",
            "input_audio_format": "pcm16",
            "output_audio_format": "pcm16",
            "turn_detection": None,  # full duplex: no turns to detect
            "backend": "duplex",
            "served_by": summary.get("backend"),
            "engine": summary.get("detail", {}).get("engine"),
            "route_reason": summary.get("route_reason"),
        }

    def _ids(self) -> dict[str, Any]:
        return content_ids(self.response_id, self.item_id)

    def _response(self, status: str, reason: str | None = None) -> dict[str, Any]:
        transcript = "".join(self.said)
        return response_object(self.response_id, self.item_id, status, transcript, reason)
