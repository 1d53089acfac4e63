"""JSON in and out of the voice API: request bodies, and errors in the shape OpenAI clients parse.

``describe`` is the one mapping from an exception to what a client is told (status, type, code,
message); the HTTP middleware and the Realtime socket both render its ``WireError``, so the same
error leaves with the same code and the same error object whichever way it goes:

    HTTP:      {"error": {"type", "code", "message", "param"}}      status, Retry-After
    Realtime:  {"type": "error", "error": {"type", "code", "message", "param", "event_id"}}

``type`` is ``invalid_request_error`` for the client's errors (4xx) and ``server_error`` for ours.

Request bodies are read here with a bound on their size (``MAX_JSON_BYTES``: a 413 beyond it),
their reading time (a 408) and their nesting (``MAX_JSON_DEPTH``: a 400, never a
``RecursionError``); ``BadRequest`` names the parameter at fault and a stable code.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from services.errors import InvalidInput, VoiceOrchestratorError

log = logging.getLogger(__name__)
INTERNAL_MESSAGE = "internal error; see the server log"
MAX_JSON_BYTES = 1 << 20
MAX_JSON_DEPTH = 32


class BadRequest(InvalidInput):
    """A request the client must change: a 400 with the stable ``code`` each case names
    (OpenAI's where it has one: ``invalid_type``, ``unknown_parameter``...) and the ``param``
    at fault, rendered as ``invalid_request_error``."""

    code = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.param = param


@dataclass(frozen=True)
class WireError:
    status: int
    code: str
    message: str
    param: str | None = None
    retry_after_s: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # the error's own ``wire_fields``

    @property
    def type(self) -> str:
        return "invalid_request_error" if self.status < 500 else "server_error"

    def body(self) -> dict[str, Any]:
        """The OpenAI error object, the same inside an HTTP body and a Realtime event."""
        base = {"type": self.type, "code": self.code, "message": self.message, "param": self.param}
        return {**self.extra, **base}


def describe(exc: BaseException) -> WireError:
    """What a client is told about ``exc``: ours by their class's code and status, aiohttp's
    HTTP errors by their reason, anything else as an internal error that hides its text."""
    if isinstance(exc, VoiceOrchestratorError):
        return WireError(
            exc.status,
            exc.code,
            exc.public_message(),
            exc.param,
            exc.retry_after_s,
            exc.wire_fields(),
        )
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


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as a JSON error with a stable code; the server keeps running.
    (The voice API and the gateway both use it. A handler that streams deals with failures
    after its headers went out itself: nothing reaches here once a response is sent.)"""
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
        return error_response(describe(exc), headers=headers)
    except VoiceOrchestratorError as exc:
        return error_response(describe(exc))
    except Exception as exc:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(describe(exc))


def realtime_error(error: WireError, client_event: str | None = None) -> dict[str, Any]:
    """The ``error`` field of a Realtime ``error`` event; ``client_event`` is the event at fault."""
    return {**error.body(), "event_id": client_event}


async def read_bounded(request: web.Request, limit: int, timeout_s: float) -> bytes:
    """The whole body, at most ``limit`` bytes (else a 413) and read within ``timeout_s``
    (else a 408: a client that trickles its body does not hold a handler forever)."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit, request.content_length)
    data = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.content.iter_chunked(1 << 16):
                data += chunk
                if len(data) > limit:
                    raise _too_large(limit, len(data))
    except TimeoutError:
        raise web.HTTPRequestTimeout(
            text=f"the request body was not received within {timeout_s:g} s"
        ) from None
    return bytes(data)


def _too_large(limit: int, actual: int) -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(
        max_size=limit, actual_size=actual, text=f"the body is larger than {limit} bytes"
    )


async def json_object(
    request: web.Request, timeout_s: float = 30.0, limit: int = MAX_JSON_BYTES
) -> dict[str, Any]:
    """The request body as a JSON object of at most ``limit`` bytes and bounded depth, or a
    ``BadRequest`` (or 413, 408) saying what is wrong with it."""
    data = await read_bounded(request, limit, timeout_s)
    too_deep = BadRequest(
        f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels", code="invalid_json"
    )
    try:
        body = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:  # nested past the interpreter's stack: past our bound too
        raise too_deep from None
    if _depth(body) > MAX_JSON_DEPTH:
        raise too_deep
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object", code="invalid_json")
    return body


def _depth(value: Any) -> int:
    """How deep ``value`` nests (a scalar is 0), walked without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list) and level <= MAX_JSON_DEPTH + 1:
            deepest = max(deepest, level)
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, level + 1) for child in children)
    return deepest
