"""``/v1/realtime`` against bad input: every malformed event is an ``error`` event with OpenAI's
code and the field named, and the session answers the next good event as if nothing happened.

One socket on the tiny engines takes the whole list (a session per case would load the engines
again each time); after each bad event a ``session.update`` with a fresh marker must come back
``session.updated`` with that marker, so a case that killed the session fails on the spot.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from orchestrator.api.app import create_api_app
from orchestrator.app.runtime import Runtime
from tests.realtime_client import Socket, connect


def event(type_: str, **fields: Any) -> str:
    return json.dumps({"type": type_, **fields})


def vad(**settings: Any) -> str:
    return event("session.update", session={"turn_detection": {"type": "server_vad", **settings}})


def user_item(content: Any) -> str:
    return event(
        "conversation.item.create", item={"type": "message", "role": "user", "content": content}
    )


DEEP = "[" * 100_000 + "]" * 100_000

# (what the client sends, the error's code, its param)
CASES: list[tuple[str, str, str | None]] = [
    # session.update with a string or a list where a number belongs (the first class)
    (vad(threshold="high"), "invalid_type", "session.turn_detection.threshold"),
    (vad(threshold=[0.5]), "invalid_type", "session.turn_detection.threshold"),
    (vad(silence_duration_ms="500"), "invalid_type", "session.turn_detection.silence_duration_ms"),
    (vad(silence_duration_ms=[500]), "invalid_type", "session.turn_detection.silence_duration_ms"),
    (vad(prefix_padding_ms={"ms": 3}), "invalid_type", "session.turn_detection.prefix_padding_ms"),
    (vad(threshold=2.5), "decimal_above_max_value", "session.turn_detection.threshold"),
    (
        vad(silence_duration_ms=-1),
        "integer_below_min_value",
        "session.turn_detection.silence_duration_ms",
    ),
    (
        event("session.update", session={"turn_detection": "server_vad"}),
        "invalid_type",
        "session.turn_detection",
    ),
    (
        event("session.update", session={"turn_detection": {"type": "loud"}}),
        "invalid_value",
        "session.turn_detection.type",
    ),
    (
        event(
            "session.update",
            session={
                "type": "realtime",
                "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": "high"}}},
            },
        ),
        "invalid_type",
        "session.audio.input.turn_detection.threshold",
    ),
    # instructions that are not a string
    (event("session.update", session={"instructions": 42}), "invalid_type", "session.instructions"),
    (
        event("session.update", session={"instructions": ["a"]}),
        "invalid_type",
        "session.instructions",
    ),
    (event("session.update", session="everything"), "invalid_type", "session"),
    (event("session.update"), "missing_required_parameter", "session"),
    (event("session.update", session={"backend": "gpu"}), "invalid_value", "session.backend"),
    (
        event("session.update", session={"turn_detecton": None}),
        "unknown_parameter",
        "session.turn_detecton",
    ),
    # conversation.item.create with item or content of the wrong type
    (event("conversation.item.create", item="hello"), "invalid_type", "item"),
    (event("conversation.item.create", item=["hello"]), "invalid_type", "item"),
    (event("conversation.item.create", item=7), "invalid_type", "item"),
    (user_item("hello"), "invalid_type", "item.content"),
    (user_item({"text": "hello"}), "invalid_type", "item.content"),
    (user_item(["hello"]), "invalid_type", "item.content[0]"),
    (user_item([{"type": "input_text", "text": 5}]), "invalid_type", "item.content[0].text"),
    (user_item([{"type": "input_text", "text": None}]), "invalid_value", "item.content"),
    (user_item([]), "invalid_value", "item.content"),
    (
        event(
            "conversation.item.create", item={"type": "message", "role": "system", "content": []}
        ),
        "invalid_value",
        "item.role",
    ),
    # the other events
    (event("input_audio_buffer.append", audio=5), "invalid_type", "audio"),
    (event("input_audio_buffer.append"), "missing_required_parameter", "audio"),
    (event("input_audio_buffer.append", audio="%%%"), "invalid_input", "audio"),
    (
        event("input_audio_buffer.append", audio=base64.b64encode(b"abc").decode()),
        "invalid_input",
        "audio",
    ),
    (
        event("conversation.item.truncate", item_id="x", content_index=0),
        "missing_required_parameter",
        "audio_end_ms",
    ),
    (
        event("conversation.item.truncate", item_id="x", content_index=0, audio_end_ms="10"),
        "invalid_type",
        "audio_end_ms",
    ),
    (
        event("conversation.item.truncate", item_id="x", content_index=0, audio_end_ms=-3),
        "integer_below_min_value",
        "audio_end_ms",
    ),
    (
        event("conversation.item.truncate", item_id="nope", content_index=0, audio_end_ms=5),
        "invalid_input",
        None,
    ),
    (event("response.create", response="now"), "invalid_type", "response"),
    (
        event("response.create", response={"modalities": "audio"}),
        "invalid_type",
        "response.modalities",
    ),
    (event("response.cancel"), "response_cancel_not_active", None),
    (event("input_audio_buffer.commit"), "input_audio_buffer_commit_empty", None),
    # the envelope
    ("{not json", "invalid_json", None),
    (DEEP, "invalid_json", None),
    ("[1, 2]", "invalid_event", None),
    ('{"type": 5}', "invalid_event", None),
    (event("session.dance"), "unknown_event", None),
    (event("conversation.item.delete", item_id="x"), "unknown_event", None),
]


async def still_answers(socket: Socket, marker: str) -> None:
    await socket.send("session.update", session={"instructions": marker})
    updated = await socket.until("session.updated", timeout=30)
    assert updated["session"]["instructions"] == marker


async def test_every_bad_event_is_an_error_and_the_session_goes_on(
    cascade_runtime: Runtime, aiohttp_server: Any
) -> None:
    server: TestServer = await aiohttp_server(create_api_app(cascade_runtime))
    async with aiohttp.ClientSession() as http:
        socket = await connect(server, http)
        await socket.until("session.created")
        for n, (raw, code, param) in enumerate(CASES):
            await socket.ws.send_str(raw)
            error = (await socket.until("error", timeout=30))["error"]
            got = (error["type"], error["code"], error["param"])
            assert got == ("invalid_request_error", code, param), (raw[:120], error)
            assert error["message"]
            await still_answers(socket, f"case {n}")
        await socket.ws.send_bytes(b"\x00\x01")
        assert (await socket.until("error"))["error"]["code"] == "binary_frame"
        await still_answers(socket, "after binary")
        assert not socket.ws.closed
        await socket.ws.close()


async def test_the_error_answers_the_client_s_event_id(
    cascade_runtime: Runtime, aiohttp_server: Any
) -> None:
    server: TestServer = await aiohttp_server(create_api_app(cascade_runtime))
    async with aiohttp.ClientSession() as http:
        socket = await connect(server, http)
        await socket.until("session.created")
        await socket.send("session.update", event_id="evt_1", session={"instructions": 1})
        assert (await socket.until("error"))["error"]["event_id"] == "evt_1"
        await socket.send("session.update", event_id=99, session={"instructions": "x"})
        error = (await socket.until("error"))["error"]
        assert (error["code"], error["param"], error["event_id"]) == (
            "invalid_type",
            "event_id",
            None,
        )
        await socket.ws.close()
