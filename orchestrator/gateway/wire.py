"""What the gateway says on its own: HTTP errors and Realtime server events.

Errors are rendered by ``orchestrator.api.errors`` (``describe``), so a client sees the same
shape from the gateway as from the host:

    HTTP:      {"error": {"type", "code", "message", "param", ...}}   status, Retry-After
    Realtime:  {"type": "error", "event_id", "error": {"type", "code", "message", "param", ...}}

A ``host_waking`` error also carries the host's ``state`` and ``eta_s``, and a
``host_start_failed`` one its ``retry_after_s`` (their ``wire_fields``), so an app can show
progress without parsing the message. HTTP errors leave through ``orchestrator.api.errors``'
``json_errors`` middleware and ``error_response``, as the host's do.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from orchestrator.api.errors import WireError, describe, realtime_error

log = logging.getLogger(__name__)


def server_event(type_: str, **fields: Any) -> dict[str, Any]:
    """A Realtime server event with its own ``event_id``, as the host numbers them."""
    return {"event_id": f"event_{uuid.uuid4().hex[:20]}", "type": type_, **fields}


def error_event(error: BaseException | WireError, **extra: Any) -> dict[str, Any]:
    """A Realtime ``error`` event, rendered as the HTTP error for the same failure."""
    wire = error if isinstance(error, WireError) else describe(error)
    return server_event("error", error={**realtime_error(wire), **extra})
