"""The cascade renderer: every session event kind, as the Realtime server events it becomes.

A kind added to ``RENDERERS`` without a sample and its expected events here fails the suite.
"""

from __future__ import annotations

import base64

import pytest

from orchestrator.api.realtime.render import RENDERERS, render
from orchestrator.api.realtime.wire import GA_NAMES, ga_named
from orchestrator.voice.boundary import SessionEvent

RENDER_SAMPLES = {
    "waking": SessionEvent("waking", engines=("asr", "llm")),
    "speech_started": SessionEvent("speech_started", at_ms=120),
    "speech_stopped": SessionEvent("speech_stopped", at_ms=900),
    "partial_transcript": SessionEvent("partial_transcript", text="seven"),
    "transcript": SessionEvent("transcript", item_id="item_u", text="seven times eight"),
    "reply_started": SessionEvent("reply_started", item_id="item_a", response_id="resp_1"),
    "reply_text": SessionEvent("reply_text", item_id="item_a", response_id="resp_1", text="It"),
    "reply_audio": SessionEvent("reply_audio", item_id="item_a", response_id="resp_1", audio=b"12"),
    "reply_done": SessionEvent(
        "reply_done", item_id="item_a", response_id="resp_1", text="It is 56.", status="completed"
    ),
    "fallback": SessionEvent("fallback", engines=("tts", "vibevoice", "piper"), text="down"),
    "error": SessionEvent("error", text="the LLM failed", code="engine_call_failed"),
    "truncated": SessionEvent("truncated", item_id="item_a"),
}
EXPECTED_TYPES = {
    "waking": ["waking"],
    "speech_started": ["input_audio_buffer.speech_started"],
    "speech_stopped": ["input_audio_buffer.speech_stopped"],
    "partial_transcript": ["conversation.item.input_audio_transcription.delta"],
    "transcript": [
        "input_audio_buffer.committed",
        "conversation.item.created",
        "conversation.item.input_audio_transcription.completed",
    ],
    "reply_started": ["response.created"],
    "reply_text": ["response.audio_transcript.delta"],
    "reply_audio": ["response.audio.delta"],
    "reply_done": ["response.audio.done", "response.audio_transcript.done", "response.done"],
    "fallback": ["fallback"],
    "error": ["error"],
    "truncated": [],
}


@pytest.mark.parametrize("kind", sorted(RENDERERS))
def test_every_session_event_kind_renders_in_order(kind: str) -> None:
    rendered = render(RENDER_SAMPLES[kind])
    assert [e["type"] for e in rendered] == EXPECTED_TYPES[kind]
    assert len({e["event_id"] for e in rendered}) == len(rendered)


def test_a_finished_reply_renders_its_response_and_ga_names() -> None:
    *_, done = render(RENDER_SAMPLES["reply_done"])
    response = done["response"]
    assert (response["id"], response["status"], response["status_details"]) == (
        "resp_1",
        "completed",
        None,
    )
    assert response["output"][0]["content"] == [{"type": "audio", "transcript": "It is 56."}]
    (delta,) = render(RENDER_SAMPLES["reply_audio"])
    assert base64.b64decode(delta["delta"]) == b"12"
    assert ga_named(delta)["type"] == GA_NAMES["response.audio.delta"]
    assert render(SessionEvent("some_future_kind")) == []
