"""The Realtime client events we accept: one frozen class per wire type.

A client event is checked against the ``openai`` package's model of it (``schema.validate``:
wrong types, missing or unknown fields are refused there, with OpenAI's codes), then mapped
into its class here, so a handler gets typed fields instead of poking at a dict;
``CLIENT_EVENTS`` maps each wire ``type`` to its class and is the list of what the server
understands (any other type is ``unknown_event``). Each class keeps only what the server uses
(``response.create``'s options, for one, are not read), and refuses what the models allow but
we cannot do (a role other than ``user``, audio that is not PCM16) or what is out of range
(``threshold`` above 1): ``InvalidEvent``/``InvalidInput`` with the field as ``param``; the
client gets an ``error`` event and the session goes on.

``to_dict`` writes the event as a client would send it, so that
``parse(e.to_dict(), limits, ga=...) == e`` for every class (tests/test_realtime_events.py
checks it). The envelope (``type``, the client's ``event_id``) is read by the connection.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel

from orchestrator.api.realtime.schema import (
    BACKENDS,
    Backend,
    Extensions,
    InvalidEvent,
    is_ga,
    validate,
)
from services.errors import InvalidInput

__all__ = ["BACKENDS", "Backend", "InvalidEvent"]


@dataclass(frozen=True)
class Limits:
    """What the server's configuration allows in a client event."""

    max_append_bytes: int  # ``sessions.max_append_bytes``, measured on the base64 text


def _bounded(value: float | None, param: str, low: float, high: float | None = None) -> None:
    """Our bounds on a number OpenAI's model only types (OpenAI's codes for them)."""
    if value is None:
        return
    integer = isinstance(value, int)
    if value < low:
        code = "integer_below_min_value" if integer else "decimal_below_min_value"
        raise InvalidEvent(f"Invalid '{param}': must be at least {low}, got {value}.", code, param)
    if high is not None and value > high:
        code = "integer_above_max_value" if integer else "decimal_above_max_value"
        raise InvalidEvent(f"Invalid '{param}': must be at most {high}, got {value}.", code, param)


def _vad(detection: Any, param: str) -> dict[str, Any]:
    """What the listener reads of a ``turn_detection`` object, bounds checked."""
    vad: dict[str, Any] = {}
    for key in ("threshold", "silence_duration_ms", "prefix_padding_ms"):
        value = getattr(detection, key, None)
        if value is not None:
            _bounded(value, f"{param}.{key}", 0, 1 if key == "threshold" else None)
            vad[key] = value
    return vad


@dataclass(frozen=True)
class SessionUpdate:
    """``session.update``: the cascade's settings, the GA protocol, or the duplex back-end.

    ``None`` means "not given, keep what is set". ``vad_enabled`` is False for
    ``turn_detection: null`` (no server VAD: the client commits and asks for each reply),
    ``vad`` its settings when it is an object. ``voice`` is beta ``voice`` or GA
    ``audio.output.voice``; ``backend`` is our extension (``schema.EXTENSIONS``).
    """

    TYPE: ClassVar[str] = "session.update"
    ga: bool = False  # the client sent ``session.type = "realtime"``
    backend: Backend = "cascade"
    instructions: str | None = None
    voice: str | None = None
    vad: dict[str, Any] | None = None
    vad_enabled: bool | None = None
    reply_language: str | None = None  # our extension: "" turns it off

    @classmethod
    def from_model(cls, model: BaseModel, extensions: Extensions, limits: Limits) -> Self:
        config: Any = getattr(model, "session")  # noqa: B009 (the models differ per dialect)
        ga = "type" in config.model_fields_set
        if ga and config.type != "realtime":
            raise InvalidEvent(
                "session.type must be 'realtime' (transcription-only sessions are not supported)",
                "invalid_value",
                "session.type",
            )
        backend = extensions.backend or "cascade"
        if ga:
            audio = config.audio
            given = audio is not None and audio.input is not None
            holder, where = (audio.input if given else None), "session.audio.input"
            output = audio.output if audio is not None else None
            voice: Any = output.voice if output is not None else None
            for part, side in ((holder, "input"), (output, "output")):
                kind = getattr(getattr(part, "format", None), "type", None)
                if kind not in (None, "audio/pcm"):
                    param = f"session.audio.{side}.format.type"
                    raise InvalidEvent(
                        f"Invalid value for '{param}': only 'audio/pcm' is served.", param=param
                    )
            if voice is not None and not isinstance(voice, str):
                voice = voice.id  # a custom voice, by id
        else:
            holder, where, voice = config, "session", config.voice
            _audio_format(config.input_audio_format, "session.input_audio_format")
            _audio_format(config.output_audio_format, "session.output_audio_format")
        detection_given = holder is not None and "turn_detection" in holder.model_fields_set
        detection = getattr(holder, "turn_detection", None)
        cascade = backend == "cascade"  # the duplex back-end has no turns: ignored there
        return cls(
            ga=ga,
            backend=backend,
            instructions=config.instructions,
            voice=voice,
            vad=_vad(detection, f"{where}.turn_detection")
            if cascade and detection is not None
            else None,
            vad_enabled=detection is not None if cascade and detection_given else None,
            reply_language=extensions.reply_language,
        )

    def to_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {"type": "realtime"} if self.ga else {}
        config["backend"] = self.backend
        if self.instructions is not None:
            config["instructions"] = self.instructions
        if self.reply_language is not None:
            config["reply_language"] = self.reply_language
        detection = None if not self.vad_enabled else {"type": "server_vad", **(self.vad or {})}
        if not self.ga:
            if self.voice is not None:
                config["voice"] = self.voice
            if self.vad_enabled is not None:
                config["turn_detection"] = detection
        else:
            audio: dict[str, Any] = {}
            if self.voice is not None:
                audio["output"] = {"voice": self.voice}
            if self.vad_enabled is not None:
                audio["input"] = {"turn_detection": detection}
            if audio:
                config["audio"] = audio
        return {"type": self.TYPE, "session": config}


def _audio_format(value: str | None, param: str) -> None:
    if value not in (None, "pcm16"):
        raise InvalidEvent(f"Invalid value for '{param}': only 'pcm16' is served.", param=param)


@dataclass(frozen=True)
class InputAudioBufferAppend:
    """``input_audio_buffer.append``: PCM16 mono 24 kHz, base64 on the wire."""

    TYPE: ClassVar[str] = "input_audio_buffer.append"
    pcm: bytes = field(repr=False)

    @classmethod
    def from_model(cls, model: BaseModel, extensions: Extensions, limits: Limits) -> Self:
        text: str = getattr(model, "audio")  # noqa: B009
        if len(text) > limits.max_append_bytes:
            raise InvalidEvent(
                f"an append carries at most {limits.max_append_bytes} bytes",
                "invalid_input",
                "audio",
            )
        try:
            pcm = base64.b64decode(text, validate=True)
        except binascii.Error as exc:
            raise InvalidEvent(
                f"'audio' is not valid base64: {exc}", "invalid_input", "audio"
            ) from None
        if len(pcm) % 2:
            raise InvalidEvent(
                "PCM16 audio must have an even number of bytes", "invalid_input", "audio"
            )
        return cls(pcm)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.TYPE, "audio": base64.b64encode(self.pcm).decode()}


@dataclass(frozen=True)
class ConversationItemCreate:
    """``conversation.item.create``: a message of the conversation, its text parts joined by
    spaces: a user's (``input_text``, and ``input_image`` parts: GA's, a data URL each, kept as
    sent and checked by the connection) or, to seed a conversation held elsewhere before (the
    gateway hands a session over from its bridge this way), an assistant's (``text``, GA
    ``output_text``). An assistant message joins the history; no reply is made for it."""

    TYPE: ClassVar[str] = "conversation.item.create"
    text: str
    role: Literal["user", "assistant"] = "user"
    images: tuple[str, ...] = field(default=(), repr=False)  # the input_image parts' URLs

    @classmethod
    def from_model(cls, model: BaseModel, extensions: Extensions, limits: Limits) -> Self:
        item: Any = getattr(model, "item")  # noqa: B009
        refused = "only user (input_text, input_image) and assistant (text) messages can be created"
        role = getattr(item, "role", None)
        if role not in ("user", "assistant") or getattr(item, "type", None) not in (
            None,
            "message",
        ):
            raise InvalidEvent(refused, "invalid_value", "item.role")
        kinds = ("input_text",) if role == "user" else ("text", "output_text")
        parts = getattr(item, "content", None) or []
        texts = [getattr(p, "text", None) for p in parts if getattr(p, "type", None) in kinds]
        text = " ".join(t for t in texts if isinstance(t, str)).strip()
        images: list[str] = []
        for index, part in enumerate(parts):
            if role == "user" and getattr(part, "type", None) == "input_image":
                url = getattr(part, "image_url", None)
                if not isinstance(url, str) or not url:
                    param = f"item.content[{index}].image_url"
                    raise InvalidEvent(
                        "an input_image part needs its image_url (a data URL)",
                        "missing_required_parameter",
                        param,
                    )
                images.append(url)
        if not text and not images:
            raise InvalidEvent(refused, "invalid_value", "item.content")
        return cls(text, role, tuple(images))

    def to_dict(self) -> dict[str, Any]:
        kind = "input_text" if self.role == "user" else "text"
        content: list[dict[str, Any]] = [{"type": kind, "text": self.text}] if self.text else []
        content += [{"type": "input_image", "image_url": url} for url in self.images]
        return {
            "type": self.TYPE,
            "item": {"type": "message", "role": self.role, "content": content},
        }


@dataclass(frozen=True)
class ConversationItemTruncate:
    """``conversation.item.truncate``: the client played ``audio_end_ms`` of a reply (barge-in)."""

    TYPE: ClassVar[str] = "conversation.item.truncate"
    item_id: str
    audio_end_ms: int

    @classmethod
    def from_model(cls, model: BaseModel, extensions: Extensions, limits: Limits) -> Self:
        event: Any = model
        _bounded(event.audio_end_ms, "audio_end_ms", 0)
        _bounded(event.content_index, "content_index", 0, 0)  # one content part per item
        return cls(event.item_id, event.audio_end_ms)

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
    def from_model(cls, model: BaseModel, extensions: Extensions, limits: Limits) -> Self:
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


def parse(data: Mapping[str, Any], limits: Limits, *, ga: bool = False) -> ClientEvent:
    """The typed event of a client event object, read in the GA dialect when ``ga`` (the
    connection's) or its own shape says so; ``InvalidInput`` for an unknown type too (the
    connection looks the type up first, to answer ``unknown_event``)."""
    kind = data.get("type")
    cls = CLIENT_EVENTS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise InvalidInput(f"unknown event type {kind!r}")
    model, extensions = validate(data, ga=is_ga(data, connection_ga=ga))
    return cls.from_model(model, extensions, limits)
