"""A ``/v1/realtime`` connection on the full-duplex back-end (``session.backend = "duplex"``).

The client asks with ``session.update`` (beta or GA shape) before the conversation starts::

    {"type": "session.update", "session": {"backend": "duplex",
        "instructions": "You are a patient maths tutor.", "voice": "NATF2"}}

``instructions`` (required, non-empty; or set by an earlier update) become the persona's text
prompt; ``voice`` (or GA ``audio.output.voice``) names one of the duplex engine's voices, with or
without its ``.pt``, else the engine's default voice is used. The connection's cascade session
is closed (its leases released) and a ``DuplexSession`` routed like ``/v1/duplex`` takes over:
the duplex engine when it is free, else the cascade, answering frame for frame either way.

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

from orchestrator.api.duplex import DUPLEX_ROUTER
from orchestrator.api.realtime.connection import (
    RealtimeConnection,
    Refused,
    decode_append,
    server_event,
)
from orchestrator.core.events import Subscription
from orchestrator.duplex.routing import DuplexRouter, DuplexUnavailable
from orchestrator.duplex.session import DuplexSession
from services.duplex_client import DuplexModel, Pcm
from services.duplex_protocol import FRAME_SAMPLES
from services.errors import EngineError, InvalidInput
from services.tasks import TaskSet

log = logging.getLogger(__name__)


def _requested_voice(config: dict[str, Any]) -> Any:
    """The voice of a beta (``voice``) or GA (``audio.output.voice``) session object."""
    audio = config.get("audio")
    output = audio.get("output") if isinstance(audio, dict) else None
    if isinstance(output, dict) and "voice" in output:
        return output["voice"]
    return config.get("voice")


def voice_prompt(router: DuplexRouter, text_prompt: str, voice: Any) -> str | None:
    """The duplex engine's voice file for a Realtime ``voice``, or None for its default."""
    name = router.engine_name
    engine = router.fleet.engine(name) if name is not None else None
    if not isinstance(engine, DuplexModel):
        return None
    wanted = [voice, f"{voice}.pt"] if isinstance(voice, str) and voice else []
    for candidate in [*wanted, None]:
        with contextlib.suppress(InvalidInput):
            return engine.persona(text_prompt, candidate).voice_prompt
    return None


class RealtimeDuplex:
    """The ``FrontEnd`` of a DuplexSession that speaks Realtime events on a connection."""

    def __init__(self, conn: RealtimeConnection, text_prompt: str, voice: str | None) -> None:
        self.conn = conn
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
        self._bus: Subscription = conn.runtime.bus.subscribe()

    @classmethod
    async def switch(cls, conn: RealtimeConnection, config: dict[str, Any]) -> None:
        """Move the connection to a DuplexSession; Refused (nothing changed) when it cannot."""
        if conn.conversation_started:
            raise Refused(
                "session.backend can switch to 'duplex' only before the conversation starts "
                "(no audio appended, no item or response created): open a new connection",
                "conversation_already_started",
                "session.backend",
            )
        router = conn.app.get(DUPLEX_ROUTER) if conn.app is not None else None
        if router is None:
            raise Refused(
                "this server has no duplex back-end",
                DuplexUnavailable.code,
                status=DuplexUnavailable.status,
            )
        instructions = config.get("instructions", conn.client_instructions)
        text_prompt = instructions.strip() if isinstance(instructions, str) else ""
        if not text_prompt:
            raise Refused(
                "session.backend 'duplex' needs non-empty 'instructions': they are the duplex "
                "model's text prompt",
                "invalid_input",
                "session.instructions",
            )
        voice = _requested_voice(config)
        chosen = voice_prompt(
            router, text_prompt, voice if voice is not None else conn.session.voice
        )
        bridge = cls(conn, text_prompt, chosen)
        session = DuplexSession(
            conn.runtime,
            router,
            bridge,
            text_prompt=text_prompt,
            voice_prompt=chosen,
            protocol="realtime",
            session_id=conn.session.id,
        )
        try:
            session.claim()
        except DuplexUnavailable as exc:
            bridge._bus.close()
            raise Refused(str(exc), exc.code, "session.backend", status=exc.status) from None
        bridge.session = session
        conn.duplex = bridge  # from here on the connection's close closes it
        await conn.session.close()  # the cascade's leases go back before the duplex loads
        try:
            await session.start()
        except EngineError as exc:
            conn.duplex = None
            await bridge.close()
            await cls._back_to_cascade(conn)
            raise Refused(
                f"the duplex back-end could not start ({exc}): the session stays on the cascade",
                exc.code,
                "session.backend",
                status=exc.status,
            ) from None
        log.info("realtime session %s on the %s", session.id, session.summary()["backend"])
        await bridge._begin()

    @staticmethod
    async def _back_to_cascade(conn: RealtimeConnection) -> None:
        """Reopen the connection's cascade session (closed, it keeps its configuration and
        holds nothing else before the conversation starts); close the socket if it cannot."""
        try:
            await conn.session.open()
        except EngineError as exc:
            await conn.error(
                f"no back-end can serve this session: {exc}", "session_failed", status=exc.status
            )
            await conn.ws.close(code=1011, message=b"no back-end can serve this session")

    # -- client events -----------------------------------------------------------------------

    async def handle(self, kind: str, event: dict[str, Any]) -> None:
        """A client event while the duplex session runs (unknown kinds are caught before)."""
        if kind == "input_audio_buffer.append":
            pcm16 = decode_append(event, self.conn.runtime.config.sessions.max_append_bytes)
            samples = np.frombuffer(pcm16, dtype=np.int16).astype(np.float32) / 32768.0
            if self.session is not None:
                await self.session.feed(samples)
        elif kind == "session.update":
            raise Refused(
                "a duplex session's persona is fixed once it runs: open a new connection to "
                "change it",
                "session_fixed",
            )
        else:
            raise Refused(
                f"{kind} does not apply to a full-duplex session: the model listens and speaks "
                "continuously; stream input_audio_buffer.append",
                "not_in_duplex",
            )

    # -- the session's output (FrontEnd) -----------------------------------------------------

    async def audio(self, frame: Pcm) -> None:
        """Output in 80 ms deltas: the duplex engine's Opus pages decode in smaller pieces."""
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
        await self.conn.send(server_event("response.audio.delta", delta=delta, **self._ids()))

    async def text(self, piece: str) -> None:
        await self._running.wait()
        self.said.append(piece)
        await self.conn.send(
            server_event("response.audio_transcript.delta", delta=piece, **self._ids())
        )

    async def end(self, reason: str) -> None:
        """Nothing can serve the session any more: say so, then close the socket."""
        await self._finish("failed", reason)
        await self.conn.error(f"the duplex session ended: {reason}", "session_failed", status=503)
        await self.conn.ws.close(code=1011, message=reason[:120].encode())

    # -- lifecycle ---------------------------------------------------------------------------

    async def _begin(self) -> None:
        await self.conn.send(server_event("session.updated", session=self.view()))
        await self.conn.send(
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
            await self.conn.send(
                server_event(
                    "session.backend_changed",
                    source=data["source"],
                    target=data["target"],
                    reason=data["reason"],
                    gap_s=data["gap_s"],
                )
            )
            await self.conn.send(server_event("session.updated", session=self.view()))

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
        await self.conn.send(server_event("response.audio.done", **self._ids()))
        await self.conn.send(
            server_event("response.audio_transcript.done", transcript=transcript, **self._ids())
        )
        await self.conn.send(server_event("response.done", response=self._response(status, reason)))

    # -- views -------------------------------------------------------------------------------

    def view(self) -> dict[str, Any]:
        """The ``session`` object of ``session.updated``, with who serves the session."""
        session = self.session
        summary = session.summary() if session is not None else {}
        return {
            **({"type": "realtime"} if self.conn.ga else {}),
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
        return {
            "response_id": self.response_id,
            "item_id": self.item_id,
            "output_index": 0,
            "content_index": 0,
        }

    def _response(self, status: str, reason: str | None = None) -> dict[str, Any]:
        output = [
            {
                "id": self.item_id,
                "object": "realtime.item",
                "type": "message",
                "status": status,
                "role": "assistant",
                "content": [{"type": "audio", "transcript": "".join(self.said)}],
            }
        ]
        details = (
            {"type": "failed", "error": {"type": "server_error", "message": reason}}
            if reason is not None
            else None
        )
        return {
            "id": self.response_id,
            "object": "realtime.response",
            "status": status,
            "status_details": details,
            "output": [] if status == "in_progress" else output,
            "usage": None,
        }
