"""Failures of engines behind HTTP, as part of the one tree in ``services.errors``.

    EngineCallError
    ├── ServerUnavailable   transient, 503: refused, timed out, dropped mid-answer, 5xx, 429
    └── ServerRejected      permanent, 502: the server understood and said no (bad key, bad request)

``translate`` maps httpx's exception tree onto these at the adapter boundary, so fallback chains
and the supervisor decide on ``transient``, never on message text.
"""

from __future__ import annotations

import json

import httpx

from services.errors import EngineCallError, EngineError


class ServerUnavailable(EngineCallError):
    code = "server_unavailable"
    status = 503
    transient = True


class ServerRejected(EngineCallError):
    code = "server_rejected"
    transient = False


def error_text(body: str) -> str:
    """The message inside an error body (Ollama's ``{"error": "..."}`` or OpenAI's
    ``{"error": {"message": "..."}}``), else the body itself, cut short."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:300]
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    return str(error)[:300] if error else body.strip()[:300]


def from_status(status: int, body: str, *, engine: str, what: str) -> EngineCallError:
    message = f"{what}: HTTP {status}: {error_text(body)}"
    if status == 429 or status >= 500:
        return ServerUnavailable(message, engine=engine)
    return ServerRejected(message, engine=engine)


def translate(exc: Exception, *, engine: str, what: str) -> EngineError:
    """Our error for an httpx (or socket) failure while doing ``what``."""
    if isinstance(exc, EngineError):
        return exc
    if isinstance(exc, httpx.HTTPStatusError):
        return from_status(exc.response.status_code, exc.response.text, engine=engine, what=what)
    if isinstance(exc, httpx.TimeoutException):
        return ServerUnavailable(f"{what}: timed out ({type(exc).__name__})", engine=engine)
    if isinstance(exc, httpx.ConnectError | ConnectionError):
        return ServerUnavailable(f"{what}: cannot connect ({exc})", engine=engine)
    if isinstance(exc, httpx.TransportError):
        return ServerUnavailable(f"{what}: connection failed ({type(exc).__name__})", engine=engine)
    return EngineCallError(f"{what}: {type(exc).__name__}: {exc}", engine=engine)
