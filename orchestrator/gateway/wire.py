"""What the gateway says on its own: HTTP errors and Realtime server events.

Errors are rendered by ``orchestrator.api.errors`` (``describe``), so a client sees the same
shape from the gateway as from the host:

    HTTP:      {"error": {"type", "code", "message", "param", ...}}   status, Retry-After
    Realtime:  {"type": "error", "event_id", "error": {"type", "code", "message", "param", ...}}

A ``host_waking`` error also carries the host's ``state`` and ``eta_s``, and a
``host_start_failed`` one its ``retry_after_s``, so an app can show progress without
parsing the message.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from orchestrator.api.errors import WireError, describe, realtime_error
from orchestrator.gateway.errors import HostStartFailed, HostWaking
from services.errors import VoiceOrchestratorError

log = logging.getLogger(__name__)


def extra_fields(exc: BaseException) -> dict[str, Any]:
    """The fields a gateway error adds to the OpenAI error object."""
    if isinstance(exc, HostWaking):
        return {"state": exc.state, "eta_s": exc.eta_s}
    if isinstance(exc, HostStartFailed):
        return {"retry_after_s": exc.retry_after_s}
    return {}


def http_error(
    error: WireError, extra: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    """``error`` as an HTTP response (``Retry-After`` when it has one)."""
    headers = dict(headers or {})
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(error.retry_after_s)
    body = {"error": {**error.body(), **(extra or {})}}
    return web.json_response(body, status=error.status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal leaves as a JSON error with a stable code; the gateway keeps running.

    Handlers that stream (the proxy, the event stream) deal with failures after their
    headers went out themselves: nothing reaches this middleware once a response is sent."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {
            name: value
            for name, value in exc.headers.items()
            if name.lower() not in ("content-type", "content-length")
        }
        return http_error(describe(exc), headers=headers)
    except VoiceOrchestratorError as exc:
        return http_error(describe(exc), extra_fields(exc))
    except Exception as exc:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return http_error(describe(exc))


def server_event(type_: str, **fields: Any) -> dict[str, Any]:
    """A Realtime server event with its own ``event_id``, as the host numbers them."""
    return {"event_id": f"event_{uuid.uuid4().hex[:20]}", "type": type_, **fields}


def error_event(error: BaseException | WireError, **extra: Any) -> dict[str, Any]:
    """A Realtime ``error`` event, rendered as the HTTP error for the same failure."""
    wire = error if isinstance(error, WireError) else describe(error)
    more = {} if isinstance(error, WireError) else extra_fields(error)
    return server_event("error", error={**realtime_error(wire), **more, **extra})
