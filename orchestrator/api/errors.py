"""JSON in and out of the voice API: request bodies, and errors in the shape OpenAI clients parse.

``describe`` is the one mapping from an exception to what a client is told (status, type, code,
message); the HTTP middleware and the Realtime socket both render its ``WireError``, so the same
error leaves with the same code and the same error object whichever way it goes:

    HTTP:      {"error": {"type", "code", "message", "param"}}      status, Retry-After
    Realtime:  {"type": "error", "error": {"type", "code", "message", "param", "event_id"}}

``type`` is ``invalid_request_error`` for the client's errors (4xx) and ``server_error`` for ours.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from services.errors import InvalidInput, VoiceOrchestratorError

INTERNAL_MESSAGE = "internal error; see the server log"


@dataclass(frozen=True)
class WireError:
    status: int
    code: str
    message: str
    param: str | None = None
    retry_after_s: int | None = None

    @property
    def type(self) -> str:
        return "invalid_request_error" if self.status < 500 else "server_error"

    def body(self) -> dict[str, Any]:
        """The OpenAI error object, the same inside an HTTP body and a Realtime event."""
        return {"type": self.type, "code": self.code, "message": self.message, "param": self.param}


def describe(exc: BaseException) -> WireError:
    """What a client is told about ``exc``: ours by their class's code and status, aiohttp's
    HTTP errors by their reason, anything else as an internal error that hides its text."""
    if isinstance(exc, VoiceOrchestratorError):
        return WireError(exc.status, exc.code, exc.public_message(), exc.param, exc.retry_after_s)
    if isinstance(exc, web.HTTPException):
        code = exc.reason.lower().replace(" ", "_")
        message = exc.text if exc.text and exc.text != f"{exc.status}: {exc.reason}" else exc.reason
        return WireError(exc.status, code, message)
    return WireError(500, "internal_error", INTERNAL_MESSAGE)


def error_response(error: WireError, *, headers: dict[str, str] | None = None) -> web.Response:
    headers = dict(headers or {})
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(error.retry_after_s)
    return web.json_response({"error": error.body()}, status=error.status, headers=headers)


def realtime_error(error: WireError, client_event: str | None = None) -> dict[str, Any]:
    """The ``error`` field of a Realtime ``error`` event; ``client_event`` is the event at fault."""
    return {**error.body(), "event_id": client_event}


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or ``InvalidInput`` saying what is wrong with it."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidInput("body must be a JSON object")
    return body
