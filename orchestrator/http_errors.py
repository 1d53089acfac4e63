"""JSON error bodies with stable codes, in the shape OpenAI clients already parse."""

from __future__ import annotations

from aiohttp import web


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
