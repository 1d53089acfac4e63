"""The cascade session's events as Realtime server events: one small function per kind.

``CascadeSession`` reports what happened in its own vocabulary (``SessionEvent``, one ``kind``
and the fields that kind uses); the Realtime protocol often says it in several events (a user's
transcript is ``committed``, ``conversation.item.created`` and ``...transcription.completed``).
The table ``RENDERERS`` keeps that mapping in one place, one row per kind, and the renderers
are pure: they return the events in order, and the connection sends them. Names are the beta
ones; ``wire.ga_named`` renames them for a GA client when they are sent.

    kind                server events
    ------------------  ------------------------------------------------------------------
    waking              waking (our extension: engines still loading)
    speech_started      input_audio_buffer.speech_started
    speech_stopped      input_audio_buffer.speech_stopped
    partial_transcript  conversation.item.input_audio_transcription.delta
    transcript          input_audio_buffer.committed, conversation.item.created,
                        conversation.item.input_audio_transcription.completed
    reply_started       response.created
    reply_text          response.audio_transcript.delta
    reply_audio         response.audio.delta
    reply_done          response.audio.done, response.audio_transcript.done, response.done
    fallback            fallback (our extension: a role switched engines)
    error               error
    truncated           none: the connection answers conversation.item.truncate itself
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from orchestrator.api.realtime.wire import (
    content_ids,
    error_event,
    report_event,
    response_object,
    server_event,
)
from orchestrator.voice.boundary import SessionEvent

ServerEvents = list[dict[str, Any]]


def _ids(e: SessionEvent) -> dict[str, Any]:
    return content_ids(e.response_id, e.item_id)


def _waking(e: SessionEvent) -> ServerEvents:
    return [server_event("waking", engines=list(e.engines))]


def _speech_started(e: SessionEvent) -> ServerEvents:
    return [server_event("input_audio_buffer.speech_started", audio_start_ms=e.at_ms, item_id="")]


def _speech_stopped(e: SessionEvent) -> ServerEvents:
    return [server_event("input_audio_buffer.speech_stopped", audio_end_ms=e.at_ms, item_id="")]


def _partial_transcript(e: SessionEvent) -> ServerEvents:
    return [
        server_event(
            "conversation.item.input_audio_transcription.delta",
            item_id="",
            content_index=0,
            delta=e.text,
        )
    ]


def _transcript(e: SessionEvent) -> ServerEvents:
    item = user_item(e.item_id, {"type": "input_audio", "transcript": e.text})
    return [
        server_event("input_audio_buffer.committed", previous_item_id=None, item_id=e.item_id),
        server_event("conversation.item.created", previous_item_id=None, item=item),
        server_event(
            "conversation.item.input_audio_transcription.completed",
            item_id=e.item_id,
            content_index=0,
            transcript=e.text,
        ),
    ]


def _reply_started(e: SessionEvent) -> ServerEvents:
    response = response_object(e.response_id, e.item_id, "in_progress", e.text)
    return [server_event("response.created", response=response)]


def _reply_text(e: SessionEvent) -> ServerEvents:
    return [server_event("response.audio_transcript.delta", delta=e.text, **_ids(e))]


def _reply_audio(e: SessionEvent) -> ServerEvents:
    delta = base64.b64encode(e.audio).decode()
    return [server_event("response.audio.delta", delta=delta, **_ids(e))]


def _reply_done(e: SessionEvent) -> ServerEvents:
    response = response_object(e.response_id, e.item_id, e.status, e.text)
    return [
        server_event("response.audio.done", **_ids(e)),
        server_event("response.audio_transcript.done", transcript=e.text, **_ids(e)),
        server_event("response.done", response=response),
    ]


def _fallback(e: SessionEvent) -> ServerEvents:
    role, source, target = e.engines
    return [server_event("fallback", role=role, source=source, target=target, reason=e.text)]


def _error(e: SessionEvent) -> ServerEvents:
    return [report_event(e.error) if e.error is not None else error_event(e.text, e.code)]


def _nothing(e: SessionEvent) -> ServerEvents:
    return []


RENDERERS: dict[str, Callable[[SessionEvent], ServerEvents]] = {
    "waking": _waking,
    "speech_started": _speech_started,
    "speech_stopped": _speech_stopped,
    "partial_transcript": _partial_transcript,
    "transcript": _transcript,
    "reply_started": _reply_started,
    "reply_text": _reply_text,
    "reply_audio": _reply_audio,
    "reply_done": _reply_done,
    "fallback": _fallback,
    "error": _error,
    "truncated": _nothing,
}


def render(e: SessionEvent) -> ServerEvents:
    """The server events for one session event, in the order they are sent (none for a kind
    the protocol has no event for)."""
    return RENDERERS.get(e.kind, _nothing)(e)


def user_item(item_id: str, content: dict[str, Any], *more: dict[str, Any]) -> dict[str, Any]:
    """The ``item`` of ``conversation.item.created`` for a user message (spoken or typed, and
    its images)."""
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "status": "completed",
        "role": "user",
        "content": [content, *more],
    }


def assistant_item(item_id: str, text: str) -> dict[str, Any]:
    """The ``item`` of ``conversation.item.created`` for an assistant message a client added
    (a conversation carried over from elsewhere): text, no audio."""
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "text", "text": text}],
    }
