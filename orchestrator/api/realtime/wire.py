"""What every part of ``/v1/realtime`` says on the wire: server events, errors, GA names.

The cascade renderer, the connection and the duplex back-end all build server events; they
share these helpers so that an ``error``, a ``response`` object or a delta's ids look the same
whoever sends them. ``ClientLink`` is what a back-end needs of the connection it serves: the
duplex back-end is written against it, so it does not import the connection that starts it.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from orchestrator.api.errors import WireError, describe, realtime_error
from services.errors import VoiceOrchestratorError

# The GA protocol renamed these; a client that sends ``session.type`` gets the GA names.
GA_NAMES = {
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
    "conversation.item.created": "conversation.item.added",
}


def server_event(type_: str, **fields: Any) -> dict[str, Any]:
    """A server event with its own ``event_id``, as the Realtime protocol sends them."""
    return {"event_id": f"event_{uuid.uuid4().hex[:20]}", "type": type_, **fields}


def ga_named(event: dict[str, Any]) -> dict[str, Any]:
    """The event with its GA name (most names did not change)."""
    event["type"] = GA_NAMES.get(event["type"], event["type"])
    return event


def error_event(
    message: str,
    code: str,
    client_event: str | None = None,
    param: str | None = None,
    *,
    status: int = 400,
) -> dict[str, Any]:
    """An ``error`` server event about the protocol itself (no exception behind it);
    ``client_event`` is the ``event_id`` of the event it answers."""
    return report_event(WireError(status, code, message, param), client_event)


def report_event(
    error: BaseException | WireError, client_event: str | None = None
) -> dict[str, Any]:
    """An ``error`` server event for ``error``, rendered as the HTTP API renders the same one."""
    wire = error if isinstance(error, WireError) else describe(error)
    return server_event("error", error=realtime_error(wire, client_event))


def content_ids(response_id: str, item_id: str) -> dict[str, Any]:
    """Where a delta belongs: every response has one output item with one content part."""
    return {"response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0}


def response_object(
    response_id: str, item_id: str, status: str, transcript: str, reason: str | None = None
) -> dict[str, Any]:
    """The ``response`` of ``response.created`` (no output yet) and ``response.done`` (the
    assistant's audio item); ``reason`` fills ``status_details`` of a failed response."""
    output = [
        {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": [{"type": "audio", "transcript": transcript}],
        }
    ]
    details = (
        {"type": "failed", "error": {"type": "server_error", "message": reason}}
        if reason is not None
        else None
    )
    return {
        "id": response_id,
        "object": "realtime.response",
        "status": status,
        "status_details": details,
        "output": [] if status == "in_progress" else output,
        "usage": None,
    }


class Refused(VoiceOrchestratorError):
    """A well-formed client event that cannot be done now: an ``error`` event with the stable
    ``code`` each refusal names (a 400 unless ``status`` says otherwise); the session goes on."""

    code = "refused"
    status = 400

    def __init__(
        self, message: str, code: str, param: str | None = None, *, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.message, self.code, self.param = message, code, param
        if status is not None:
            self.status = status


class ClientLink(Protocol):
    """The connection as a back-end sees it: one ordered way out to the client."""

    ga: bool  # the client spoke the GA protocol: ``send`` renames the events

    async def send(self, event: dict[str, Any]) -> None:
        """Send one server event (after the ones sent before it; dropped once closed)."""

    async def error(
        self,
        message: str,
        code: str,
        client_event: str | None = None,
        param: str | None = None,
        *,
        status: int = 400,
    ) -> None:
        """Send an ``error`` event about the protocol (a 400 unless ``status`` says otherwise)."""

    async def report(
        self, error: BaseException | WireError, client_event: str | None = None
    ) -> None:
        """Send an ``error`` event for an exception, rendered as HTTP renders it."""

    async def close(self, code: int, message: bytes) -> None:
        """Close the socket: nothing can serve the session any more."""
