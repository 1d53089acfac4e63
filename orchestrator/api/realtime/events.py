"""The Realtime client events we accept: one frozen class per wire type.

A client event is parsed into its class before anything acts on it, so a handler gets typed
fields instead of poking at a dict; ``CLIENT_EVENTS`` maps each wire ``type`` to its class and
is the list of what the server understands (any other type is ``unknown_event``). Each class
keeps only what the server uses (``response.create``'s options, for one, are not read); the
later move to the ``openai`` package's models will widen them.

``from_dict`` raises ``InvalidInput`` saying what is wrong (the client gets ``invalid_value``
and the session goes on); ``to_dict`` writes the event as a client would send it, so that
``parse(e.to_dict(), limits) == e`` for every class (tests/test_realtime_events.py checks it).
The envelope (``type``, the client's ``event_id``) is read by the connection, not kept here.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Self

from services.errors import InvalidInput

Backend = Literal["cascade", "duplex"]
BACKENDS: tuple[Backend, ...] = ("cascade", "duplex")


@dataclass(frozen=True)
class Limits:
    """What the server's configuration allows in a client event."""

    max_append_bytes: int  # ``sessions.max_append_bytes``, measured on the base64 text


def _optional_str(data: Mapping[str, Any], key: str, path: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"{path} must be a string")
    return value


@dataclass(frozen=True)
class SessionUpdate:
    """``session.update``: the cascade's settings, the GA protocol, or the duplex back-end.

    ``None`` means "not given, keep what is set". ``vad_enabled`` is False for
    ``turn_detection: null`` (no server VAD), ``vad`` its settings when it is an object. The
    GA ``audio.output.voice`` is kept apart from ``voice``: only the duplex back-end reads it.
    """

    TYPE: ClassVar[str] = "session.update"
    ga: bool = False  # the client sent ``session.type = "realtime"``
    backend: Backend = "cascade"
    instructions: str | None = None
    voice: str | None = None
    output_voice: str | None = None
    vad: dict[str, Any] | None = None
    vad_enabled: bool | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], limits: Limits) -> SessionUpdate:
        config = data.get("session")
        if not isinstance(config, dict):
            raise InvalidInput("session.update needs a 'session' object")
        if "type" in config and config["type"] != "realtime":
            raise InvalidInput(
                "session.type must be 'realtime' (transcription-only sessions are not supported)"
            )
        backend = config.get("backend", "cascade")
        if backend not in BACKENDS:
            raise InvalidInput(f"session.backend must be one of {', '.join(BACKENDS)}")
        detection = config.get("turn_detection", ...)
        if (
            backend == "cascade"
            and detection not in (..., None)
            and not isinstance(detection, dict)
        ):
            raise InvalidInput("turn_detection must be an object or null")  # duplex: ignored
        audio = config.get("audio")
        output = audio.get("output") if isinstance(audio, dict) else None
        return cls(
            ga="type" in config,
            backend=backend,
            instructions=_optional_str(config, "instructions", "session.instructions"),
            voice=_optional_str(config, "voice", "session.voice"),
            output_voice=_optional_str(output, "voice", "session.audio.output.voice")
            if isinstance(output, dict)
            else None,
            vad=detection if isinstance(detection, dict) and backend == "cascade" else None,
            vad_enabled=None if detection is ... or backend == "duplex" else detection is not None,
        )

    def to_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {"type": "realtime"} if self.ga else {}
        config["backend"] = self.backend
        for key in ("instructions", "voice"):
            if getattr(self, key) is not None:
                config[key] = getattr(self, key)
        if self.output_voice is not None:
            config["audio"] = {"output": {"voice": self.output_voice}}
        if self.vad_enabled is not None:
            config["turn_detection"] = (self.vad or {}) if self.vad_enabled else None
        return {"type": self.TYPE, "session": config}


@dataclass(frozen=True)
class InputAudioBufferAppend:
    """``input_audio_buffer.append``: PCM16 mono 24 kHz, base64 on the wire."""

    TYPE: ClassVar[str] = "input_audio_buffer.append"
    pcm: bytes = field(repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], limits: Limits) -> InputAudioBufferAppend:
        text = data.get("audio")
        if not isinstance(text, str):
            raise InvalidInput("'audio' must be base64 text")
        if len(text) > limits.max_append_bytes:
            raise InvalidInput(f"an append carries at most {limits.max_append_bytes} bytes")
        try:
            pcm = base64.b64decode(text, validate=True)
        except binascii.Error as exc:
            raise InvalidInput(f"'audio' is not valid base64: {exc}") from None
        if len(pcm) % 2:
            raise InvalidInput("PCM16 audio must have an even number of bytes")
        return cls(pcm)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.TYPE, "audio": base64.b64encode(self.pcm).decode()}


@dataclass(frozen=True)
class ConversationItemCreate:
    """``conversation.item.create``: a user message; its ``text`` parts joined by spaces."""

    TYPE: ClassVar[str] = "conversation.item.create"
    text: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], limits: Limits) -> ConversationItemCreate:
        item = data.get("item") or {}
        if not isinstance(item, dict):
            item = {}  # refused below, like a message without text
        parts = item.get("content")
        texts = (
            [p.get("text", "") for p in parts if isinstance(p, dict)]
            if isinstance(parts, list)
            else []
        )
        text = " ".join(t for t in texts if isinstance(t, str)).strip()
        if item.get("role") != "user" or not text:
            raise InvalidInput("only user messages with input_text content can be created")
        return cls(text)

    def to_dict(self) -> dict[str, Any]:
        content = [{"type": "input_text", "text": self.text}]
        return {"type": self.TYPE, "item": {"type": "message", "role": "user", "content": content}}


@dataclass(frozen=True)
class ConversationItemTruncate:
    """``conversation.item.truncate``: the client played ``audio_end_ms`` of a reply (barge-in)."""

    TYPE: ClassVar[str] = "conversation.item.truncate"
    item_id: str
    audio_end_ms: int

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], limits: Limits) -> ConversationItemTruncate:
        item_id, end_ms = data.get("item_id"), data.get("audio_end_ms")
        if not isinstance(item_id, str) or not isinstance(end_ms, int) or end_ms < 0:
            raise InvalidInput("truncate needs 'item_id' and a non-negative 'audio_end_ms'")
        return cls(item_id, end_ms)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "item_id": self.item_id,
            "content_index": 0,
            "audio_end_ms": self.audio_end_ms,
        }


@dataclass(frozen=True)
class _NoFields:
    """An event whose type is all it says."""

    TYPE: ClassVar[str]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], limits: Limits) -> Self:
        return cls()

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.TYPE}


@dataclass(frozen=True)
class InputAudioBufferCommit(_NoFields):
    """``input_audio_buffer.commit``: the user's turn ends here (without server VAD)."""

    TYPE: ClassVar[str] = "input_audio_buffer.commit"


@dataclass(frozen=True)
class InputAudioBufferClear(_NoFields):
    """``input_audio_buffer.clear``: drop the audio not yet committed."""

    TYPE: ClassVar[str] = "input_audio_buffer.clear"


@dataclass(frozen=True)
class ResponseCreate(_NoFields):
    """``response.create``: answer now (its options are not read)."""

    TYPE: ClassVar[str] = "response.create"


@dataclass(frozen=True)
class ResponseCancel(_NoFields):
    """``response.cancel``: stop the reply in progress (barge-in)."""

    TYPE: ClassVar[str] = "response.cancel"


ClientEvent = (
    SessionUpdate
    | InputAudioBufferAppend
    | InputAudioBufferCommit
    | InputAudioBufferClear
    | ConversationItemCreate
    | ConversationItemTruncate
    | ResponseCreate
    | ResponseCancel
)
CLIENT_EVENT_CLASSES: tuple[type[ClientEvent], ...] = (
    SessionUpdate,
    InputAudioBufferAppend,
    InputAudioBufferCommit,
    InputAudioBufferClear,
    ConversationItemCreate,
    ConversationItemTruncate,
    ResponseCreate,
    ResponseCancel,
)
CLIENT_EVENTS: dict[str, type[ClientEvent]] = {cls.TYPE: cls for cls in CLIENT_EVENT_CLASSES}


def parse(data: Mapping[str, Any], limits: Limits) -> ClientEvent:
    """The typed event of a client event object; ``InvalidInput`` for an unknown type too
    (the connection looks the type up first, to answer ``unknown_event``)."""
    kind = data.get("type")
    cls = CLIENT_EVENTS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise InvalidInput(f"unknown event type {kind!r}")
    return cls.from_dict(data, limits)
