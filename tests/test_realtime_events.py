"""The Realtime client events and their dispatch table, without a server.

Like the PersonaPlex protocol's round-trip test: every client event class is discovered in its
module, so a new event without a sample here, a parser or a handler fails the suite.
"""

from __future__ import annotations

import base64
import dataclasses
import inspect
from typing import Any

import pytest

from orchestrator.api.realtime import events
from orchestrator.api.realtime.connection import HANDLERS
from orchestrator.api.realtime.duplex import refusal
from orchestrator.api.realtime.wire import Refused
from services.errors import InvalidInput

LIMITS = events.Limits(max_append_bytes=64)
SAMPLES: dict[type[Any], list[Any]] = {
    events.SessionUpdate: [
        events.SessionUpdate(),
        events.SessionUpdate(
            ga=True,
            instructions="Be brief.",
            voice="Emma",
            vad={"threshold": 0.4},
            vad_enabled=True,
        ),
        events.SessionUpdate(vad_enabled=False),
        events.SessionUpdate(backend="duplex", instructions="Tutor.", output_voice="NATF2"),
    ],
    events.InputAudioBufferAppend: [events.InputAudioBufferAppend(b"\x01\x00\xff\x7f")],
    events.InputAudioBufferCommit: [events.InputAudioBufferCommit()],
    events.InputAudioBufferClear: [events.InputAudioBufferClear()],
    events.ConversationItemCreate: [events.ConversationItemCreate("What is 7 times 8?")],
    events.ConversationItemTruncate: [events.ConversationItemTruncate("item_1", 1500)],
    events.ResponseCreate: [events.ResponseCreate()],
    events.ResponseCancel: [events.ResponseCancel()],
}


def test_every_client_event_round_trips_and_has_a_handler() -> None:
    classes = [
        cls
        for _name, cls in inspect.getmembers(events, inspect.isclass)
        if dataclasses.is_dataclass(cls) and isinstance(getattr(cls, "TYPE", None), str)
    ]
    assert set(classes) == set(events.CLIENT_EVENT_CLASSES)
    for cls in classes:
        assert SAMPLES.get(cls), f"{cls.__name__} has no round-trip sample"
        for event in SAMPLES[cls]:
            assert event.to_dict()["type"] == cls.TYPE
            assert events.parse(event.to_dict(), LIMITS) == event
    assert set(events.CLIENT_EVENTS) == set(HANDLERS)
    assert len(events.CLIENT_EVENTS) == len(classes)  # no two classes share a wire type


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"type": "session.update"}, "needs a 'session' object"),
        ({"type": "session.update", "session": {"type": "transcription"}}, "session.type"),
        ({"type": "session.update", "session": {"backend": "gpu"}}, "session.backend"),
        ({"type": "session.update", "session": {"turn_detection": 3}}, "turn_detection"),
        ({"type": "input_audio_buffer.append", "audio": 5}, "base64 text"),
        ({"type": "input_audio_buffer.append", "audio": b64(bytes(66))}, "at most 64 bytes"),
        ({"type": "input_audio_buffer.append", "audio": "not base64!"}, "not valid base64"),
        ({"type": "input_audio_buffer.append", "audio": b64(b"abc")}, "even number"),
        ({"type": "conversation.item.create", "item": {"role": "user"}}, "only user messages"),
        ({"type": "conversation.item.create", "item": "hello"}, "only user messages"),
        (
            {
                "type": "conversation.item.create",
                "item": {"role": "assistant", "content": [{"type": "text", "text": "hi"}]},
            },
            "only user messages",
        ),
        ({"type": "conversation.item.truncate", "item_id": "i"}, "non-negative"),
        ({"type": "conversation.item.truncate", "item_id": "i", "audio_end_ms": -1}, "non-"),
        ({"type": "response.dance"}, "unknown event type"),
    ],
)
def test_bad_events_say_what_is_wrong(event: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        events.parse(event, LIMITS)


def test_a_duplex_update_ignores_turn_detection_and_reads_the_ga_voice() -> None:
    config = {
        "type": "realtime",
        "backend": "duplex",
        "turn_detection": "server_vad",
        "audio": {"output": {"voice": "NATM1"}},
    }
    event = events.parse({"type": "session.update", "session": config}, LIMITS)
    assert event == events.SessionUpdate(ga=True, backend="duplex", output_voice="NATM1")


def test_the_duplex_back_end_refuses_turn_events_by_type() -> None:
    assert refusal(events.InputAudioBufferAppend.TYPE) is None
    fixed = refusal(events.SessionUpdate.TYPE)
    assert isinstance(fixed, Refused) and fixed.code == "session_fixed"
    for kind in set(events.CLIENT_EVENTS) - {"input_audio_buffer.append", "session.update"}:
        refused = refusal(kind)
        assert isinstance(refused, Refused) and refused.code == "not_in_duplex", kind
