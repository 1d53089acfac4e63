"""One ``/v1/realtime`` connection: its state, and a handler per client event type.

The connection owns what lasts as long as the socket: the cascade session (opened by the route,
closed by ``close``), whether the client speaks the GA protocol, whether the conversation has
started, and, once the client asked for ``session.backend = "duplex"``, the duplex back-end
that serves it instead (``orchestrator.api.realtime.duplex``). Client events are parsed into
their classes (``events``: checked against the ``openai`` package's models first, in the
dialect the client speaks) and dispatched through ``HANDLERS``, keyed by the wire type; the
session's events go out through the renderer (``render``). One lock serialises the sends: the
session's tasks and the client's handlers both send. No client event ends the session: bad
input, a refusal and even a bug in a handler are answered with an ``error`` event.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from orchestrator.api.errors import WireError
from orchestrator.api.images import read_image, too_many
from orchestrator.api.realtime.duplex import RealtimeDuplex, refusal
from orchestrator.api.realtime.events import (
    CLIENT_EVENTS,
    ConversationItemCreate,
    ConversationItemTruncate,
    InputAudioBufferAppend,
    InputAudioBufferClear,
    InputAudioBufferCommit,
    Limits,
    ResponseCancel,
    ResponseCreate,
    SessionUpdate,
    parse,
)
from orchestrator.api.realtime.render import assistant_item, render, user_item
from orchestrator.api.realtime.wire import (
    Refused,
    error_event,
    ga_named,
    report_event,
    server_event,
)
from orchestrator.app.runtime import Runtime
from orchestrator.duplex.routing import DuplexRouter, DuplexUnavailable
from orchestrator.voice.boundary import SessionEvent
from orchestrator.voice.session import CascadeSession
from services.errors import EngineError, VoiceOrchestratorError

log = logging.getLogger(__name__)


class RealtimeConnection:
    """The server's side of one Realtime socket (a ``ClientLink`` for the duplex back-end)."""

    def __init__(
        self, ws: web.WebSocketResponse, runtime: Runtime, router: DuplexRouter | None = None
    ) -> None:
        self.ws = ws
        self.runtime = runtime
        self.router = router  # None: this server has no duplex back-end
        self.limits = Limits(max_append_bytes=runtime.config.sessions.max_append_bytes)
        self.session = CascadeSession(runtime.session_deps(), self._render)
        self._send_lock = asyncio.Lock()
        self.ga = False
        self.duplex: RealtimeDuplex | None = None  # once the client asked for the duplex back-end
        self.conversation_started = False  # audio, an item or a response: too late to switch
        self.client_instructions: str | None = None

    # -- out ---------------------------------------------------------------------------------

    async def send(self, event: dict[str, Any]) -> None:
        async with self._send_lock:
            if not self.ws.closed:
                await self.ws.send_json(ga_named(event) if self.ga else event)

    async def error(
        self,
        message: str,
        code: str,
        client_event: str | None = None,
        param: str | None = None,
        *,
        status: int = 400,
    ) -> None:
        await self.send(error_event(message, code, client_event, param, status=status))

    async def report(
        self, error: BaseException | WireError, client_event: str | None = None
    ) -> None:
        await self.send(report_event(error, client_event))

    async def close(self, code: int, message: bytes) -> None:
        await self.ws.close(code=code, message=message)

    async def _render(self, e: SessionEvent) -> None:
        for event in render(e):
            await self.send(event)

    def session_view(self) -> dict[str, Any]:
        """The ``session`` object of ``session.created|updated`` on the cascade."""
        s = self.session
        return {
            **({"type": "realtime"} if self.ga else {}),
            "id": s.id,
            "object": "realtime.session",
            "model": "voice-orchestrator-cascade",
            "backend": "cascade",
            "modalities": ["audio", "text"],
            "instructions": s.instructions,
            "voice": s.voice or "default",
            "reply_language": s.replies.reply_language,
            "input_audio_format": "pcm16",
            "output_audio_format": "pcm16",
            "turn_detection": {
                "type": "server_vad",
                "threshold": s.turn_settings.threshold,
                "prefix_padding_ms": 300,
                "silence_duration_ms": int(s.turn_settings.end_silence_s * 1000),
            }
            if s.server_vad
            else None,
        }

    # -- in ----------------------------------------------------------------------------------

    async def handle(self, raw: str) -> None:
        """One client event: bad input and refusals become ``error`` events; the session goes on.

        On the duplex back-end, whether an event applies is decided on its type, before its
        content is read: a turn-based event is ``not_in_duplex`` however it is filled in.
        """
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, RecursionError) as exc:
            await self.error(f"invalid JSON: {exc}", "invalid_json")
            return
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            await self.error("an event is a JSON object with a 'type'", "invalid_event")
            return
        kind, client_event = data["type"], data.get("event_id")
        if not isinstance(client_event, str):
            client_event = None
        if kind not in CLIENT_EVENTS:
            await self.error(f"unknown event type {kind!r}", "unknown_event", client_event)
            return
        try:
            if self.duplex is not None and (refused := refusal(kind)) is not None:
                raise refused
            event = parse(data, self.limits, ga=self.ga)
            if self.duplex is not None and isinstance(event, InputAudioBufferAppend):
                await self.duplex.append(event)
            else:
                await HANDLERS[kind](self, event)
        except VoiceOrchestratorError as exc:
            await self.report(exc, client_event)
        except Exception as exc:  # a bug must not end the session: the log has the details
            log.exception("realtime %s: %s failed", self.session.id, kind)
            await self.report(exc, client_event)

    async def _session_update(self, event: SessionUpdate) -> None:
        if event.ga:
            self.ga = True
        if event.backend == "duplex":
            await self._switch_to_duplex(event)
            return
        self.session.configure(
            instructions=event.instructions,
            voice=event.voice,
            vad=event.vad,
            vad_enabled=event.vad_enabled,
            reply_language=event.reply_language,
        )
        if event.instructions is not None:
            self.client_instructions = event.instructions
        await self.send(server_event("session.updated", session=self.session_view()))

    async def _append(self, event: InputAudioBufferAppend) -> None:
        self.conversation_started = True
        await self.session.append_audio(event.pcm)

    async def _commit(self, event: InputAudioBufferCommit) -> None:
        await self.session.commit()

    async def _clear(self, event: InputAudioBufferClear) -> None:
        self.session.clear()
        await self.send(server_event("input_audio_buffer.cleared"))

    async def _create_item(self, event: ConversationItemCreate) -> None:
        self.conversation_started = True
        if event.role == "assistant":
            item_id = self.session.add_assistant_text(event.text)
            item = assistant_item(item_id, event.text)
        elif event.images:
            item = await self._create_image_item(event)
        else:
            item_id = self.session.add_user_text(event.text)
            item = user_item(item_id, {"type": "input_text", "text": event.text})
        await self.send(server_event("conversation.item.created", previous_item_id=None, item=item))

    async def _create_image_item(self, event: ConversationItemCreate) -> dict[str, Any]:
        """A user's photo: checked as a chat's (``api.images``: limits, 4xx codes), then the
        session's VLM sees it in the next reply. The item echoed back names each image part
        without its bytes (the client has them)."""
        limits = self.runtime.config.api
        too_many(len(event.images), limits, "item.content")
        images = tuple([await read_image(url, limits, "item.content") for url in event.images])
        item_id = await self.session.add_user_images(event.text, images)
        parts = [{"type": "input_image", "detail": "auto"} for _ in images]
        text = {"type": "input_text", "text": event.text}
        return user_item(item_id, text, *parts) if event.text else user_item(item_id, *parts)

    async def _create_response(self, event: ResponseCreate) -> None:
        self.conversation_started = True
        await self.session.start_reply()

    async def _cancel_response(self, event: ResponseCancel) -> None:
        await self.session.cancel_reply()

    async def _truncate(self, event: ConversationItemTruncate) -> None:
        self.session.truncate(event.item_id, event.audio_end_ms)
        await self.send(
            server_event(
                "conversation.item.truncated",
                item_id=event.item_id,
                content_index=0,
                audio_end_ms=event.audio_end_ms,
            )
        )

    # -- the duplex back-end -----------------------------------------------------------------

    async def _switch_to_duplex(self, event: SessionUpdate) -> None:
        """Hand the connection to the duplex back-end; Refused (and still on the cascade) when
        it cannot be done."""
        if self.conversation_started:
            raise Refused(
                "session.backend can switch to 'duplex' only before the conversation starts "
                "(no audio appended, no item or response created): open a new connection",
                "conversation_already_started",
                "session.backend",
            )
        if self.router is None:
            raise Refused(
                "this server has no duplex back-end",
                DuplexUnavailable.code,
                status=DuplexUnavailable.status,
            )
        voice = event.voice
        duplex = RealtimeDuplex.claim(
            self,
            self.runtime,
            self.router,
            instructions=event.instructions
            if event.instructions is not None
            else self.client_instructions,
            voice=voice if voice is not None else self.session.voice,
            session_id=self.session.id,
        )
        self.duplex = duplex  # from here on ``close`` closes it
        await self.session.close()  # the cascade's leases go back before the duplex loads
        try:
            await duplex.start()
        except EngineError as exc:
            self.duplex = None
            await duplex.close()
            await self._back_to_cascade()
            raise Refused(
                f"the duplex back-end could not start ({exc}): the session stays on the cascade",
                exc.code,
                "session.backend",
                status=exc.status,
            ) from None

    async def _back_to_cascade(self) -> None:
        """Reopen the cascade session (closed, it keeps its configuration and holds nothing
        else before the conversation starts); close the socket if it cannot."""
        try:
            await self.session.open()
        except EngineError as exc:
            await self.error(
                f"no back-end can serve this session: {exc}", "session_failed", status=exc.status
            )
            await self.close(1011, b"no back-end can serve this session")

    async def end(self) -> None:
        """Release everything (the route shields this): the back-end's leases, tasks, socket."""
        if self.duplex is not None:
            await self.duplex.close()
        await self.session.close()  # a no-op when it was closed for the duplex back-end
        await self.ws.close()


Handler = Callable[[RealtimeConnection, Any], Awaitable[None]]
HANDLERS: dict[str, Handler] = {
    SessionUpdate.TYPE: RealtimeConnection._session_update,
    InputAudioBufferAppend.TYPE: RealtimeConnection._append,
    InputAudioBufferCommit.TYPE: RealtimeConnection._commit,
    InputAudioBufferClear.TYPE: RealtimeConnection._clear,
    ConversationItemCreate.TYPE: RealtimeConnection._create_item,
    ConversationItemTruncate.TYPE: RealtimeConnection._truncate,
    ResponseCreate.TYPE: RealtimeConnection._create_response,
    ResponseCancel.TYPE: RealtimeConnection._cancel_response,
}
"""What the connection does with each client event on the cascade (the same keys as
``events.CLIENT_EVENTS``; tests/test_realtime_events.py checks it)."""
