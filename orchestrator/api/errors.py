"""JSON in and out of the voice API: request bodies, and error bodies with stable codes in the
shape OpenAI clients already parse."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from services.errors import InvalidInput


def error_response(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": {"code": code, "message": message, "type": _type_for(status)}}
    return web.json_response(body, status=status, headers=headers)


def _type_for(status: int) -> str:
    if status in (401, 403):
        return "authentication_error"
    if status < 500:
        return "invalid_request_error"
    return "server_error"


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or ``InvalidInput`` saying what is wrong with it."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidInput("body must be a JSON object")
    return body
