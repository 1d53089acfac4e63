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

from orchestrator.api.realtime import events, schema
from orchestrator.api.realtime.connection import HANDLERS
from orchestrator.api.realtime.duplex import refusal
from orchestrator.api.realtime.wire import Refused
from services.errors import InvalidInput

LIMITS = events.Limits(max_append_bytes=64)
ASSISTANT_SAID = events.ConversationItemCreate("Fifty-six.", "assistant")
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
        events.SessionUpdate(voice="Emma", vad={"silence_duration_ms": 300}, vad_enabled=True),
        events.SessionUpdate(vad_enabled=False),
        events.SessionUpdate(ga=True, vad_enabled=False),
        events.SessionUpdate(backend="duplex", instructions="Tutor.", voice="NATF2"),
        events.SessionUpdate(reply_language="de"),
        events.SessionUpdate(ga=True, reply_language=""),
    ],
    events.InputAudioBufferAppend: [events.InputAudioBufferAppend(b"\x01\x00\xff\x7f")],
    events.InputAudioBufferCommit: [events.InputAudioBufferCommit()],
    events.InputAudioBufferClear: [events.InputAudioBufferClear()],
    events.ConversationItemCreate: [
        events.ConversationItemCreate("What is 7 times 8?"),
        ASSISTANT_SAID,
        # GA's input_image parts (beta has none): read as GA whatever the connection speaks
        events.ConversationItemCreate("And this one?", images=("data:image/png;base64,AAAA",)),
        events.ConversationItemCreate("", images=("data:image/png;base64,AA==",) * 2),
    ],
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
            for ga in (False, True):  # a session.update's own shape says GA; others follow it
                if ga and event == ASSISTANT_SAID:
                    continue  # GA names the part output_text: test_ga_events_... reads it
                assert events.parse(event.to_dict(), LIMITS, ga=ga) == event
    assert set(events.CLIENT_EVENTS) == set(HANDLERS)
    assert len(events.CLIENT_EVENTS) == len(classes)  # no two classes share a wire type


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def session(**config: Any) -> dict[str, Any]:
    return {"type": "session.update", "session": config}


def item(**fields: Any) -> dict[str, Any]:
    return {"type": "conversation.item.create", "item": {"type": "message", **fields}}


GA_VAD = {"audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": "high"}}}}


@pytest.mark.parametrize(
    ("event", "code", "param"),
    [
        ({"type": "session.update"}, "missing_required_parameter", "session"),
        (session(type="transcription"), "invalid_value", "session.type"),
        (session(backend="gpu"), "invalid_value", "session.backend"),
        (session(turn_detection=3), "invalid_type", "session.turn_detection"),
        (
            session(turn_detection={"type": "server_vad", "threshold": "high"}),
            "invalid_type",
            "session.turn_detection.threshold",
        ),
        (
            session(turn_detection={"threshold": [0.5]}),
            "invalid_type",
            "session.turn_detection.threshold",
        ),
        (
            session(turn_detection={"silence_duration_ms": "long"}),
            "invalid_type",
            "session.turn_detection.silence_duration_ms",
        ),
        (
            session(turn_detection={"threshold": 1.5}),
            "decimal_above_max_value",
            "session.turn_detection.threshold",
        ),
        (
            session(turn_detection={"silence_duration_ms": -5}),
            "integer_below_min_value",
            "session.turn_detection.silence_duration_ms",
        ),
        (
            session(type="realtime", **GA_VAD),
            "invalid_type",
            "session.audio.input.turn_detection.threshold",
        ),
        (session(instructions=["be", "brief"]), "invalid_type", "session.instructions"),
        (session(instructions={"text": "hi"}), "invalid_type", "session.instructions"),
        (session(type="realtime", voice="alloy"), "unknown_parameter", "session.voice"),
        (session(temprature=0.7), "unknown_parameter", "session.temprature"),
        (session(input_audio_format="g711_ulaw"), "invalid_value", "session.input_audio_format"),
        ({"type": "input_audio_buffer.append", "audio": 5}, "invalid_type", "audio"),
        ({"type": "input_audio_buffer.append"}, "missing_required_parameter", "audio"),
        ({"type": "input_audio_buffer.append", "audio": b64(bytes(66))}, "invalid_input", "audio"),
        ({"type": "input_audio_buffer.append", "audio": "not base64!"}, "invalid_input", "audio"),
        ({"type": "input_audio_buffer.append", "audio": b64(b"abc")}, "invalid_input", "audio"),
        (item(role="user"), "invalid_value", "item.content"),
        ({"type": "conversation.item.create", "item": "hello"}, "invalid_type", "item"),
        ({"type": "conversation.item.create", "item": ["hello"]}, "invalid_type", "item"),
        (item(role="user", content="hello"), "invalid_type", "item.content"),
        (item(role="user", content=[5]), "invalid_type", "item.content[0]"),
        (
            item(role="user", content=[{"type": "input_text", "text": 7}]),
            "invalid_type",
            "item.content[0].text",
        ),
        (
            item(role="system", content=[{"type": "input_text", "text": "hi"}]),
            "invalid_value",
            "item.role",
        ),
        (
            item(role="assistant", content=[{"type": "input_text", "text": "hi"}]),
            "invalid_value",
            "item.content",
        ),
        (
            {"type": "conversation.item.truncate", "item_id": "i", "content_index": 0},
            "missing_required_parameter",
            "audio_end_ms",
        ),
        (
            {
                "type": "conversation.item.truncate",
                "item_id": "i",
                "content_index": 0,
                "audio_end_ms": -1,
            },
            "integer_below_min_value",
            "audio_end_ms",
        ),
        ({"type": "response.create", "response": "now"}, "invalid_type", "response"),
        ({"type": "response.cancel", "event_id": 5}, "invalid_type", "event_id"),
    ],
)
def test_bad_events_name_the_field_and_openai_s_code(
    event: dict[str, Any], code: str, param: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        events.parse(event, LIMITS)
    assert (caught.value.code, caught.value.param) == (code, param), str(caught.value)
    assert str(caught.value)


def test_an_unknown_type_is_refused() -> None:
    with pytest.raises(InvalidInput, match="unknown event type"):
        events.parse({"type": "response.dance"}, LIMITS)


def test_ga_events_are_read_with_the_ga_models() -> None:
    """A GA item content part is validated as GA, a beta-only shape is refused there."""
    text = item(role="user", content=[{"type": "input_text", "text": "hi"}])
    assert events.parse(text, LIMITS, ga=True) == events.ConversationItemCreate("hi")
    said = item(role="assistant", content=[{"type": "output_text", "text": "Four."}])
    assert events.parse(said, LIMITS, ga=True) == events.ConversationItemCreate(
        "Four.", "assistant"
    )
    with pytest.raises(InvalidInput) as caught:
        events.parse(session(type="realtime", turn_detection=None), LIMITS)
    assert (caught.value.code, caught.value.param) == (
        "unknown_parameter",
        "session.turn_detection",
    )


def test_our_extension_is_taken_out_before_openai_s_model_sees_it() -> None:
    data = session(backend="duplex", instructions="Tutor.")
    assert events.parse(data, LIMITS) == events.SessionUpdate(
        backend="duplex", instructions="Tutor."
    )
    assert data["session"]["backend"] == "duplex"  # the caller's event is left as it was
    assert set(schema.EXTENSIONS) == {
        ("session.update", ("session", "backend")),
        ("session.update", ("session", "reply_language")),
    }


@pytest.mark.parametrize("value", ["deu latn", "de;", 5, None, "german-language"])
def test_a_reply_language_must_look_like_a_language_code(value: object) -> None:
    with pytest.raises(events.InvalidEvent) as caught:
        events.parse(session(reply_language=value), LIMITS)
    assert (caught.value.code, caught.value.param) == ("invalid_value", "session.reply_language")
    update = events.parse(session(reply_language="zh-Hans"), LIMITS)
    assert update == events.SessionUpdate(reply_language="zh-Hans")


def test_a_duplex_update_ignores_turn_detection_and_reads_the_ga_voice() -> None:
    config = {
        "type": "realtime",
        "backend": "duplex",
        "audio": {
            "input": {"turn_detection": {"type": "server_vad"}},
            "output": {"voice": "NATM1"},
        },
    }
    event = events.parse({"type": "session.update", "session": config}, LIMITS)
    assert event == events.SessionUpdate(ga=True, backend="duplex", voice="NATM1")


def test_the_duplex_back_end_refuses_turn_events_by_type() -> None:
    assert refusal(events.InputAudioBufferAppend.TYPE) is None
    fixed = refusal(events.SessionUpdate.TYPE)
    assert isinstance(fixed, Refused) and fixed.code == "session_fixed"
    for kind in set(events.CLIENT_EVENTS) - {"input_audio_buffer.append", "session.update"}:
        refused = refusal(kind)
        assert isinstance(refused, Refused) and refused.code == "not_in_duplex", kind
