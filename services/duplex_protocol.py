"""The PersonaPlex (Moshi) WebSocket wire protocol: one class per message kind.

Every binary WebSocket message is one kind byte and a payload:

    byte  kind       direction          payload
    ----  ---------  -----------------  ---------------------------------------------------
    0x00  handshake  server -> client   none: prefill is done, the client may now send
    0x01  audio      both               Ogg Opus bytes (mono 24 kHz; one 80 ms frame a page)
    0x02  text       server -> client   a UTF-8 piece of the model's own words
    0x03  control    (clients only)     one byte: start=0, end_turn=1, pause=2, restart=3
    0x04  metadata   (clients only)     JSON
    0x05  error      (clients only)     UTF-8
    0x06  ping       (clients only)     none

The real server sends only 0x00-0x02 and accepts only 0x01; kinds 0x03-0x06 exist in its web
client and are ignored. ``decode`` raises ``ProtocolError`` on an empty message or an unknown
kind byte, so a caller can drop the message and carry on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from services.errors import InvalidInput, VoiceOrchestratorError

FRAME_SAMPLES = 1920  # 80 ms at 24 kHz: one Mimi frame
SAMPLE_RATE = 24_000
FRAME_S = FRAME_SAMPLES / SAMPLE_RATE


class ProtocolError(VoiceOrchestratorError, ValueError):
    """A message that is not a PersonaPlex message (empty, or an unknown kind byte): the
    server sent something we cannot read, hence a 502."""

    code = "duplex_protocol_error"
    status = 502


@dataclass(frozen=True)
class Handshake:
    KIND: ClassVar[int] = 0x00

    def encode(self) -> bytes:
        return bytes([self.KIND])

    @classmethod
    def from_payload(cls, payload: bytes) -> Handshake:
        return cls()


@dataclass(frozen=True)
class Audio:
    KIND: ClassVar[int] = 0x01
    ogg: bytes

    def encode(self) -> bytes:
        return bytes([self.KIND]) + self.ogg

    @classmethod
    def from_payload(cls, payload: bytes) -> Audio:
        return cls(payload)


@dataclass(frozen=True)
class Text:
    KIND: ClassVar[int] = 0x02
    text: str

    def encode(self) -> bytes:
        return bytes([self.KIND]) + self.text.encode()

    @classmethod
    def from_payload(cls, payload: bytes) -> Text:
        return cls(payload.decode("utf-8", errors="replace"))


@dataclass(frozen=True)
class Control:
    KIND: ClassVar[int] = 0x03
    action: int  # start=0, end_turn=1, pause=2, restart=3

    def encode(self) -> bytes:
        return bytes([self.KIND, self.action])

    @classmethod
    def from_payload(cls, payload: bytes) -> Control:
        if len(payload) != 1:
            raise ProtocolError("a control message carries exactly one byte")
        return cls(payload[0])


@dataclass(frozen=True)
class Metadata:
    KIND: ClassVar[int] = 0x04
    data: dict[str, Any]

    def encode(self) -> bytes:
        return bytes([self.KIND]) + json.dumps(self.data).encode()

    @classmethod
    def from_payload(cls, payload: bytes) -> Metadata:
        try:
            data = json.loads(payload)
        except ValueError as exc:
            raise ProtocolError(f"metadata is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ProtocolError("metadata is a JSON object")
        return cls(data)


@dataclass(frozen=True)
class Error:
    KIND: ClassVar[int] = 0x05
    message: str

    def encode(self) -> bytes:
        return bytes([self.KIND]) + self.message.encode()

    @classmethod
    def from_payload(cls, payload: bytes) -> Error:
        return cls(payload.decode("utf-8", errors="replace"))


@dataclass(frozen=True)
class Ping:
    KIND: ClassVar[int] = 0x06

    def encode(self) -> bytes:
        return bytes([self.KIND])

    @classmethod
    def from_payload(cls, payload: bytes) -> Ping:
        return cls()


Message = Handshake | Audio | Text | Control | Metadata | Error | Ping
MESSAGE_CLASSES: tuple[type[Message], ...] = (
    Handshake,
    Audio,
    Text,
    Control,
    Metadata,
    Error,
    Ping,
)
_BY_KIND: dict[int, type[Message]] = {cls.KIND: cls for cls in MESSAGE_CLASSES}


def required_text_prompt(query: Mapping[str, str]) -> str:
    """A session's ``text_prompt`` (its persona: the real server drops a session without one);
    ``InvalidInput`` when it is missing or blank, so every front refuses it with a 400 before
    the upgrade (the server, the gateway and the scale-out ingress, which would otherwise
    wake a replica for it)."""
    text = query.get("text_prompt", "").strip()
    if not text:
        error = InvalidInput("text_prompt is required and must not be empty")
        error.param = "text_prompt"
        raise error
    return text


def decode(data: bytes) -> Message:
    """The message in one binary WebSocket frame."""
    if not data:
        raise ProtocolError("empty message")
    cls = _BY_KIND.get(data[0])
    if cls is None:
        raise ProtocolError(f"unknown message kind 0x{data[0]:02x}")
    return cls.from_payload(data[1:])


def ogg_pages(data: bytes) -> list[bytes]:
    """Split a run of Ogg pages at page boundaries (a trailing partial page is kept whole)."""
    pages: list[bytes] = []
    offset = 0
    while offset + 27 <= len(data) and data[offset : offset + 4] == b"OggS":
        segments = data[offset + 26]
        table_end = offset + 27 + segments
        if table_end > len(data):
            break
        end = table_end + sum(data[offset + 27 : table_end])
        pages.append(data[offset:end])
        offset = end
    if offset < len(data):
        pages.append(data[offset:])
    return pages


def starts_with_opus_head(data: bytes) -> bool:
    """True for an Ogg stream's first (BOS) page carrying the OpusHead header."""
    return len(data) > 27 and data[:4] == b"OggS" and bool(data[5] & 0x02) and b"OpusHead" in data
