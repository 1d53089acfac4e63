"""The VibeVoice demo server's wire pieces: every message class round-trips (a new one without
test data fails here), the stream URL, and cutting a long text for the URL's limit."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services import vibevoice_stream
from services.vibevoice_stream import LogMessage, split_text, stream_url

EXAMPLES: dict[type, list[dict[str, Any]]] = {
    LogMessage: [
        {
            "type": "log",
            "event": "model_progress",
            "data": {"generated_sec": 0.27, "chunk_sec": 0.13},
            "timestamp": "2026-04-24 10:00:00.123",
        },
        {
            "type": "log",
            "event": "backend_busy",
            "data": {"message": "Please wait"},
            "timestamp": "",
        },
    ],
}


def message_classes() -> list[type]:
    return [
        cls
        for _, cls in inspect.getmembers(vibevoice_stream, inspect.isclass)
        if dataclasses.is_dataclass(cls) and hasattr(cls, "from_dict")
    ]


def test_every_message_class_has_examples() -> None:
    assert set(message_classes()) == set(EXAMPLES)


@pytest.mark.parametrize(
    ("cls", "wire"), [(cls, wire) for cls, wires in EXAMPLES.items() for wire in wires]
)
def test_messages_round_trip(cls: Any, wire: dict[str, Any]) -> None:
    message = cls.from_dict(wire)
    assert message.to_dict() == wire
    assert cls.from_dict(message.to_dict()) == message


@pytest.mark.parametrize(
    "text", ["", "[]", '{"type": "status", "event": "x"}', '{"type": "log"}', "not json"]
)
def test_what_is_not_a_log_message_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        LogMessage.parse(text)


def test_the_stream_url_carries_text_voice_and_settings() -> None:
    url = stream_url(
        "http://127.0.0.1:8880/", "Bonjour, ça va? 2+2=4 & more", "en-Emma_woman", {"cfg": 1.5}
    )
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("ws", "127.0.0.1:8880", "/stream")
    assert parse_qs(parts.query) == {
        "text": ["Bonjour, ça va? 2+2=4 & more"],
        "voice": ["en-Emma_woman"],
        "cfg": ["1.5"],
    }
    assert stream_url("https://tts.example", "x", "v", {}).startswith("wss://tts.example/stream?")


def test_a_long_text_is_cut_after_sentences_then_between_words() -> None:
    def fits(piece: str) -> bool:
        return len(piece) <= 30

    assert split_text("  Short enough.  ", fits) == ["Short enough."]
    text = "One two three. Four five six seven. " + "eight " * 8 + "Nine."
    pieces = split_text(text, fits)
    assert pieces[0] == "One two three." and pieces[1] == "Four five six seven."
    assert all(fits(p) for p in pieces) and " ".join(pieces).split() == text.split()
    assert split_text("x" * 70, fits) == ["x" * 30, "x" * 30, "x" * 10]


@given(
    st.lists(
        st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Z", "C")), min_size=1),
        min_size=1,
        max_size=40,
    ),
    st.integers(min_value=1, max_value=50),
)
def test_pieces_fit_and_say_the_whole_text(words: list[str], limit: int) -> None:
    text = " ".join(words)

    def fits(piece: str) -> bool:
        return len(piece.encode()) <= max(limit, 4)  # one character always fits

    pieces = split_text(text, fits)
    assert all(fits(p) for p in pieces)
    assert "".join("".join(pieces).split()) == "".join(text.split())
