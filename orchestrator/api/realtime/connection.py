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
import json
import logging
import weakref
from collections import Counter
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from orchestrator.api.keys import PER_KEY, SOCKETS
from orchestrator.api.realtime.render import render, user_item
from orchestrator.api.realtime.wire import (
    Refused,
    decode_append,
    error_event,
    ga_named,
    server_event,
)
from orchestrator.app.runtime import API_KEY_USED, RUNTIME, Runtime
from orchestrator.fleet.fleet import WakeTimeout
from orchestrator.voice.session import CascadeSession, SessionEvent
from services.errors import EngineError, InvalidInput

if TYPE_CHECKING:
    from orchestrator.api.realtime.duplex import RealtimeDuplex

log = logging.getLogger(__name__)
BACKENDS = ("cascade", "duplex")


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
        async with self._send_lock:
            if not self.ws.closed:
                await self.ws.send_json(ga_named(event) if self.ga else event)

    async def error(
        self, message: str, code: str, client_event: str | None = None, param: str | None = None
    ) -> None:
        await self.send(error_event(message, code, client_event, param))

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
        except Refused as exc:
            await self.error(exc.message, exc.code, client_event, exc.param)
        except InvalidInput as exc:
            await self.error(exc.message, "invalid_value", client_event)
        except EngineError as exc:
            await self.error(str(exc), exc.code, client_event)

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
            # imported here: orchestrator.api.realtime.duplex imports this module
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
        item = user_item(item_id, {"type": "input_text", "text": text})
        await self.send(server_event("conversation.item.created", previous_item_id=None, item=item))

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
        for event in render(e):
            await self.send(event)


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
        except (EngineError, WakeTimeout) as exc:
            await connection.error(str(exc), getattr(exc, "code", "engines_waking"))
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
