"""``/v1/realtime``: the OpenAI Realtime WebSocket protocol (beta event names) on the cascade.

Client events: ``session.update``, ``input_audio_buffer.append|commit|clear``,
``conversation.item.create``, ``response.create|cancel``, ``conversation.item.truncate``.
Server events: ``session.created|updated``, ``input_audio_buffer.speech_started|
speech_stopped|committed|cleared``, ``conversation.item.created``,
``conversation.item.input_audio_transcription.completed``, ``response.created``,
``response.audio_transcript.delta``, ``response.audio.delta``, ``response.done``,
``conversation.item.truncated``, ``error``; ``conversation.item.input_audio_transcription.delta``
with a partial transcript while the user speaks, ``waking`` while hibernated engines load, and
``fallback`` when a role switches engines.
Audio is base64 PCM16 mono at 24 kHz both ways. Bad input gets an ``error`` event; the session
goes on. A client that sends ``session.type = "realtime"`` gets the GA event names.

``session.backend`` (our extension, beta and GA shapes alike): ``"cascade"`` (the default,
ASR -> LLM -> TTS in turns) or ``"duplex"``: the full-duplex model (PersonaPlex), routed like
``/v1/duplex`` (to the cascade when the duplex engine is busy or down). Asking for ``"duplex"``
is allowed before the conversation starts (no audio appended, no item or response created); the
connection's cascade session is closed and ``instructions`` become the duplex persona's text
prompt (required). ``orchestrator.api.realtime.duplex`` serves the session from then on and lists
what changes in the protocol.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import uuid
import weakref
from collections import Counter
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from orchestrator.api.errors import WireError, describe, realtime_error
from orchestrator.app.runtime import API_KEY_USED, RUNTIME, Runtime
from orchestrator.voice.session import CascadeSession, SessionEvent
from services.errors import EngineError, InvalidInput, VoiceOrchestratorError

if TYPE_CHECKING:
    from orchestrator.api.realtime.duplex import RealtimeDuplex

log = logging.getLogger(__name__)
BACKENDS = ("cascade", "duplex")
SOCKETS: web.AppKey[weakref.WeakSet[Any]] = web.AppKey("realtime_sockets")
PER_KEY: web.AppKey[Counter[str]] = web.AppKey("realtime_per_key")


# The GA protocol renamed these; a client that sends ``session.type`` gets the GA names.
GA_NAMES = {
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
    "conversation.item.created": "conversation.item.added",
}


def server_event(type_: str, **fields: Any) -> dict[str, Any]:
    """A server event with its own ``event_id``, as the Realtime protocol sends them."""
    return {"event_id": f"event_{uuid.uuid4().hex[:20]}", "type": type_, **fields}


class Refused(VoiceOrchestratorError):
    """A well-formed client event that cannot be done now: an ``error`` event with the stable
    ``code`` each refusal names (a 400 unless ``status`` says otherwise); the session goes on."""

    code = "refused"
    status = 400

    def __init__(
        self, message: str, code: str, param: str | None = None, *, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.message, self.code, self.param = message, code, param
        if status is not None:
            self.status = status


def decode_append(event: dict[str, Any], max_bytes: int) -> bytes:
    """The PCM16 bytes of an ``input_audio_buffer.append``; InvalidInput when unusable."""
    data = event.get("audio")
    if not isinstance(data, str):
        raise InvalidInput("'audio' must be base64 text")
    if len(data) > max_bytes:
        raise InvalidInput(f"an append carries at most {max_bytes} bytes")
    try:
        pcm = base64.b64decode(data, validate=True)
    except binascii.Error as exc:
        raise InvalidInput(f"'audio' is not valid base64: {exc}") from None
    if len(pcm) % 2:
        raise InvalidInput("PCM16 audio must have an even number of bytes")
    return pcm


class RealtimeConnection:
    def __init__(
        self, ws: web.WebSocketResponse, runtime: Runtime, app: web.Application | None = None
    ) -> None:
        self.ws = ws
        self.runtime = runtime
        self.app = app  # where the duplex router lives (``session.backend = "duplex"``)
        self.session = CascadeSession(runtime, self._render)
        self._send_lock = asyncio.Lock()
        self.ga = False
        self.duplex: RealtimeDuplex | None = None  # once the client asked for the duplex back-end
        self.conversation_started = False  # audio, an item or a response: too late to switch
        self.client_instructions: str | None = None

    async def send(self, event: dict[str, Any]) -> None:
        if self.ga:
            event["type"] = GA_NAMES.get(event["type"], event["type"])
        async with self._send_lock:
            if not self.ws.closed:
                await self.ws.send_json(event)

    async def error(
        self,
        message: str,
        code: str,
        client_event: str | None = None,
        param: str | None = None,
        *,
        status: int = 400,
    ) -> None:
        """An ``error`` event about the protocol itself (no exception behind it)."""
        await self.report(WireError(status, code, message, param), client_event)

    async def report(
        self, error: BaseException | WireError, client_event: str | None = None
    ) -> None:
        """An ``error`` event for ``error``, rendered as the HTTP API renders the same error."""
        wire = error if isinstance(error, WireError) else describe(error)
        await self.send(server_event("error", error=realtime_error(wire, client_event)))

    def session_view(self) -> dict[str, Any]:
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
            "input_audio_format": "pcm16",
            "output_audio_format": "pcm16",
            "turn_detection": {
                "type": "server_vad",
                "threshold": s._detector.settings.threshold,
                "prefix_padding_ms": 300,
                "silence_duration_ms": int(s._detector.settings.end_silence_s * 1000),
            }
            if s.server_vad
            else None,
        }

    # -- client events -----------------------------------------------------------------------

    async def handle(self, raw: str) -> None:
        try:
            event = json.loads(raw)
        except json.JSONDecodeError as exc:
            await self.error(f"invalid JSON: {exc}", "invalid_json")
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            await self.error("an event is a JSON object with a 'type'", "invalid_event")
            return
        kind, client_event = event["type"], event.get("event_id")
        handler = getattr(self, "_on_" + kind.replace(".", "_"), None)
        if handler is None:
            await self.error(f"unknown event type {kind!r}", "unknown_event", client_event)
            return
        try:
            if self.duplex is not None:
                await self.duplex.handle(kind, event)
            else:
                await handler(event)
        except VoiceOrchestratorError as exc:
            await self.report(exc, client_event)

    async def _on_session_update(self, event: dict[str, Any]) -> None:
        config = event.get("session")
        if not isinstance(config, dict):
            raise InvalidInput("session.update needs a 'session' object")
        if "type" in config:
            if config["type"] != "realtime":
                raise InvalidInput(
                    "session.type must be 'realtime' (transcription-only sessions "
                    "are not supported)"
                )
            self.ga = True
        backend = config.get("backend", "cascade")
        if backend not in BACKENDS:
            raise InvalidInput(f"session.backend must be one of {', '.join(BACKENDS)}")
        if backend == "duplex":
            # imported here: orchestrator.api.duplex (the router's app key) imports this module
            from orchestrator.api.realtime.duplex import RealtimeDuplex

            await RealtimeDuplex.switch(self, config)
            return
        detection = config.get("turn_detection", ...)
        if detection is not ... and detection is not None and not isinstance(detection, dict):
            raise InvalidInput("turn_detection must be an object or null")
        self.session.configure(
            instructions=config.get("instructions"),
            voice=config.get("voice"),
            vad=detection if isinstance(detection, dict) else None,
            vad_enabled=None if detection is ... else detection is not None,
        )
        if isinstance(config.get("instructions"), str):
            self.client_instructions = config["instructions"]
        await self.send(server_event("session.updated", session=self.session_view()))

    async def _on_input_audio_buffer_append(self, event: dict[str, Any]) -> None:
        pcm = decode_append(event, self.runtime.config.sessions.max_append_bytes)
        self.conversation_started = True
        await self.session.append_audio(pcm)

    async def _on_input_audio_buffer_commit(self, event: dict[str, Any]) -> None:
        await self.session.commit()

    async def _on_input_audio_buffer_clear(self, event: dict[str, Any]) -> None:
        self.session.clear()
        await self.send(server_event("input_audio_buffer.cleared"))

    async def _on_conversation_item_create(self, event: dict[str, Any]) -> None:
        item = event.get("item") or {}
        parts = item.get("content") if isinstance(item, dict) else None
        texts = [p.get("text", "") for p in parts or [] if isinstance(p, dict)]
        text = " ".join(t for t in texts if isinstance(t, str)).strip()
        if item.get("role") != "user" or not text:
            raise InvalidInput("only user messages with input_text content can be created")
        self.conversation_started = True
        item_id = self.session.add_user_text(text)
        await self.send(
            server_event(
                "conversation.item.created",
                previous_item_id=None,
                item={
                    "id": item_id,
                    "object": "realtime.item",
                    "type": "message",
                    "status": "completed",
                    "role": "user",
                    "content": [{"type": "input_text", "text": text}],
                },
            )
        )

    async def _on_response_create(self, event: dict[str, Any]) -> None:
        self.conversation_started = True
        await self.session.start_reply()

    async def _on_response_cancel(self, event: dict[str, Any]) -> None:
        await self.session.cancel_reply()

    async def _on_conversation_item_truncate(self, event: dict[str, Any]) -> None:
        item_id, end_ms = event.get("item_id"), event.get("audio_end_ms")
        if not isinstance(item_id, str) or not isinstance(end_ms, int) or end_ms < 0:
            raise InvalidInput("truncate needs 'item_id' and a non-negative 'audio_end_ms'")
        self.session.truncate(item_id, end_ms)
        await self.send(
            server_event(
                "conversation.item.truncated", item_id=item_id, content_index=0, audio_end_ms=end_ms
            )
        )

    # -- session events ----------------------------------------------------------------------

    async def _render(self, e: SessionEvent) -> None:
        ids = {
            "response_id": e.response_id,
            "item_id": e.item_id,
            "output_index": 0,
            "content_index": 0,
        }
        if e.kind == "waking":
            await self.send(server_event("waking", engines=list(e.engines)))
        elif e.kind == "speech_started":
            await self.send(
                server_event(
                    "input_audio_buffer.speech_started", audio_start_ms=e.at_ms, item_id=""
                )
            )
        elif e.kind == "speech_stopped":
            await self.send(
                server_event("input_audio_buffer.speech_stopped", audio_end_ms=e.at_ms, item_id="")
            )
        elif e.kind == "transcript":
            await self.send(
                server_event(
                    "input_audio_buffer.committed", previous_item_id=None, item_id=e.item_id
                )
            )
            await self.send(
                server_event(
                    "conversation.item.created",
                    previous_item_id=None,
                    item={
                        "id": e.item_id,
                        "object": "realtime.item",
                        "type": "message",
                        "status": "completed",
                        "role": "user",
                        "content": [{"type": "input_audio", "transcript": e.text}],
                    },
                )
            )
            await self.send(
                server_event(
                    "conversation.item.input_audio_transcription.completed",
                    item_id=e.item_id,
                    content_index=0,
                    transcript=e.text,
                )
            )
        elif e.kind == "reply_started":
            await self.send(
                server_event("response.created", response=self._response(e, "in_progress"))
            )
        elif e.kind == "reply_text":
            await self.send(server_event("response.audio_transcript.delta", delta=e.text, **ids))
        elif e.kind == "reply_audio":
            await self.send(
                server_event(
                    "response.audio.delta", delta=base64.b64encode(e.audio).decode(), **ids
                )
            )
        elif e.kind == "reply_done":
            await self.send(server_event("response.audio.done", **ids))
            await self.send(
                server_event("response.audio_transcript.done", transcript=e.text, **ids)
            )
            await self.send(server_event("response.done", response=self._response(e, e.status)))
        elif e.kind == "partial_transcript":
            await self.send(
                server_event(
                    "conversation.item.input_audio_transcription.delta",
                    item_id="",
                    content_index=0,
                    delta=e.text,
                )
            )
        elif e.kind == "fallback":
            role, source, target = e.engines
            await self.send(
                server_event("fallback", role=role, source=source, target=target, reason=e.text)
            )
        elif e.kind == "error":
            await (self.report(e.error) if e.error is not None else self.error(e.text, e.code))

    def _response(self, e: SessionEvent, status: str) -> dict[str, Any]:
        output = (
            []
            if status == "in_progress"
            else [
                {
                    "id": e.item_id,
                    "object": "realtime.item",
                    "type": "message",
                    "status": status,
                    "role": "assistant",
                    "content": [{"type": "audio", "transcript": e.text}],
                }
            ]
        )
        return {
            "id": e.response_id,
            "object": "realtime.response",
            "status": status,
            "status_details": None,
            "output": output,
            "usage": None,
        }


async def realtime(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    settings = runtime.config.sessions
    key = request.get(API_KEY_USED, "")
    per_key = request.app[PER_KEY]
    if per_key[key] >= settings.max_per_key:
        raise web.HTTPTooManyRequests(text=f"at most {settings.max_per_key} sessions per key")
    protocols = [p for p in _offered_protocols(request) if p == "realtime"]
    ws = web.WebSocketResponse(
        heartbeat=30, protocols=protocols, max_msg_size=settings.max_append_bytes + 4096
    )
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    per_key[key] += 1
    connection = RealtimeConnection(ws, runtime, request.app)
    try:
        try:
            await connection.session.open()
        except EngineError as exc:
            await connection.report(exc)
            return ws
        await connection.send(server_event("session.created", session=connection.session_view()))
        async with asyncio.timeout(settings.max_minutes * 60):
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    await connection.handle(message.data)
                elif message.type is WSMsgType.BINARY:
                    await connection.error("send JSON text events, not binary", "binary_frame")
    except TimeoutError:
        await connection.error(
            f"session limit of {settings.max_minutes} minutes", "session_expired"
        )
    finally:
        per_key[key] -= 1
        # aiohttp may cancel the handler when the client's connection drops: the session's
        # leases and tasks must be released anyway, so the cleanup is shielded.
        await asyncio.shield(_end(connection, ws))
    return ws


async def _end(connection: RealtimeConnection, ws: web.WebSocketResponse) -> None:
    if connection.duplex is not None:
        await connection.duplex.close()
    await connection.session.close()  # a no-op when it was closed for the duplex back-end
    await ws.close()


def _offered_protocols(request: web.Request) -> list[str]:
    header = request.headers.get("Sec-WebSocket-Protocol", "")
    return [p.strip() for p in header.split(",") if p.strip()]


async def _close_sockets(app: web.Application) -> None:
    sockets: weakref.WeakSet[Any] = app[SOCKETS]
    for ws in list(sockets):
        await ws.close(code=1001, message=b"server shutting down")


def add_realtime_routes(app: web.Application) -> None:
    app[SOCKETS] = weakref.WeakSet()
    app[PER_KEY] = Counter()
    app.on_shutdown.append(_close_sockets)
    app.router.add_get("/v1/realtime", realtime)
