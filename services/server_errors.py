"""Failures of engines behind HTTP, as part of the one tree in ``services.errors``.

    EngineCallError
    ├── ServerUnavailable   transient, 503: refused, timed out, dropped mid-answer, 5xx, 429
    │   ├── ServerLoading   transient, 503: it answers, but is (re)loading its model right now
    │   └── ServerBusy      transient, 503: it serves one client at a time and has another now
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


class ServerLoading(ServerUnavailable):
    """The server answers but says it is loading its model (whisper.cpp's ``/health`` answers
    503 ``{"status": "loading model"}`` while ``POST /load`` runs): wait, it is not down."""

    code = "server_loading"


class ServerBusy(ServerUnavailable):
    """The server serves one client at a time and refused us for another (VibeVoice's demo
    server: ``backend_busy``, close 1013): a moment later it may take us."""

    code = "server_busy"


class ServerRejected(EngineCallError):
    code = "server_rejected"
    transient = False


def error_text(body: str) -> str:
    """The message inside an error body (Ollama's and whisper.cpp's ``{"error": "..."}``,
    OpenAI's ``{"error": {"message": "..."}}``, FastAPI's ``{"detail": "..."}`` or its
    validation list ``{"detail": [{"msg": ...}]}``), else the body itself, cut short."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:300]
    if not isinstance(data, dict):
        return body.strip()[:300]
    error = data.get("error") or data.get("detail")
    if isinstance(error, dict):
        error = error.get("message")
    elif isinstance(error, list):  # FastAPI: one entry per invalid field
        error = "; ".join(_field_error(item) for item in error)
    return str(error)[:300] if error else body.strip()[:300]


def _field_error(item: object) -> str:
    if not isinstance(item, dict):
        return str(item)
    where = ".".join(str(part) for part in item.get("loc") or () if part != "body")
    return f"{where}: {item.get('msg')}" if where else str(item.get("msg"))


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
