"""LibreTranslate's API on the voice API: ``POST /translate`` and ``GET /languages``.

Translation clients already speak LibreTranslate (its ``libretranslate/app.py``, 1.9.x), so the
translation role is served in its shape rather than a new one:

    POST /translate   JSON or form: q (string, or a list in JSON), source (a code or "auto"),
                      target, format ("text" | "html"), alternatives (0..limit), api_key
                      -> {"translatedText": ..., "detectedLanguage"?: ..., "alternatives"?: ...}
    GET /languages    -> [{"code", "name", "targets"}]

Errors are LibreTranslate's: ``{"error": "..."}`` with its words and statuses (400 for a bad
request or an unsupported language, 403 for a wrong key). The key: ``Authorization: Bearer``
as on every route, or LibreTranslate's ``api_key`` field (body, or query for ``/languages``).
``source = "auto"`` detects the language with ``langdetect`` (a dependency, as in
LibreTranslate); an install without it refuses ``auto`` with a 400 that says so.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web
from aiohttp.typedefs import Handler

from orchestrator.api.errors import describe
from orchestrator.api.models import resolve
from orchestrator.api.translate_html import translate_html
from orchestrator.app.runtime import API_KEY_USED, RUNTIME, Runtime
from services.base import Role
from services.errors import VoiceOrchestratorError
from services.translation import Language, TextTranslator, canonical

PATHS = frozenset({"/translate", "/languages"})
_FIELDS = web.RequestKey("libretranslate_fields", dict)
MAX_BODY_BYTES = 1 << 20
NO_KEY = "Please contact the server operator to get an API key"  # LibreTranslate's 400
WRONG_KEY = "Invalid API key"  # its 403


class Refusal(Exception):
    """A LibreTranslate error: its status and its message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def with_body_key(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Auth for a LibreTranslate client that sends no ``Authorization``: its ``api_key`` field,
    answered as LibreTranslate answers (400 when missing, 403 when wrong)."""
    runtime = request.app[RUNTIME]
    try:
        fields = await _fields(request, runtime)
    except Refusal as exc:
        return _error(exc.status, str(exc))
    key = fields.get("api_key")
    if not isinstance(key, str) or not key:
        return _error(400, NO_KEY)
    if not runtime.secrets.api_key_valid(key.strip()):
        return _error(403, WRONG_KEY)
    request[API_KEY_USED] = key.strip()
    return await handler(request)


def field_key(method: str, content_type: str, body: bytes, query: Mapping[str, str]) -> str:
    """LibreTranslate's ``api_key`` field of a request read by another front (the scale-out
    ingress checks it before it places the request on a replica): the query's for GET, the
    JSON or urlencoded body's otherwise; "" when there is none or the body cannot be read."""
    if method == "GET":
        return query.get("api_key", "").strip()
    if content_type.startswith("application/json"):
        try:
            fields = json.loads(body)
        except (ValueError, RecursionError):
            return ""
        key = fields.get("api_key") if isinstance(fields, dict) else None
        return key.strip() if isinstance(key, str) else ""
    if content_type.startswith("application/x-www-form-urlencoded"):
        found = parse_qs(body.decode("utf-8", "replace")).get("api_key", [""])
        return found[0].strip()
    return ""


async def _fields(request: web.Request, runtime: Runtime) -> dict[str, Any]:
    """The request's fields, read once: the query for GET, else the JSON or form body."""
    if _FIELDS in request:
        return request[_FIELDS]
    if request.method == "GET":
        fields: dict[str, Any] = dict(request.query)
    else:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise Refusal(413, f"Request body larger than {MAX_BODY_BYTES} bytes")
        try:
            async with asyncio.timeout(runtime.config.api.body_timeout_s):
                raw = await request.read()
                form = None if request.content_type == "application/json" else await request.post()
        except TimeoutError:
            raise Refusal(408, "The request body did not arrive in time") from None
        except web.HTTPRequestEntityTooLarge:
            raise Refusal(413, f"Request body larger than {MAX_BODY_BYTES} bytes") from None
        if len(raw) > MAX_BODY_BYTES:
            raise Refusal(413, f"Request body larger than {MAX_BODY_BYTES} bytes")
        if form is None:
            try:
                fields = json.loads(raw)
            except (ValueError, RecursionError):
                raise Refusal(400, "Invalid JSON format") from None
            if not isinstance(fields, dict):
                raise Refusal(400, "Invalid JSON format")
        else:
            fields = {name: value for name, value in form.items() if isinstance(value, str)}
            if isinstance(fields.get("q"), str):  # as LibreTranslate: line endings made \n
                fields["q"] = "\n".join(fields["q"].splitlines())
    request[_FIELDS] = fields
    return fields


async def translate(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    try:
        return web.json_response(await _translate(runtime, await _fields(request, runtime)))
    except Refusal as exc:
        return _error(exc.status, str(exc))
    except VoiceOrchestratorError as exc:
        wire = describe(exc)
        return _error(wire.status, wire.message)


async def languages(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    try:
        async with _engine(runtime) as engine:
            langs = engine.languages()
    except VoiceOrchestratorError as exc:
        wire = describe(exc)
        return _error(wire.status, wire.message)
    return web.json_response(
        [{"code": lang.code, "name": lang.name, "targets": list(lang.targets)} for lang in langs]
    )


async def _translate(runtime: Runtime, fields: Mapping[str, Any]) -> dict[str, Any]:
    limits = runtime.config.api
    q, source, target = fields.get("q"), fields.get("source"), fields.get("target")
    for name, value in (("q", q), ("source", source), ("target", target)):
        if not value:
            raise Refusal(400, f"Invalid request: missing {name} parameter")
    batch = isinstance(q, list)
    given: list[Any] = q if isinstance(q, list) else [q]
    texts = [text for text in given if isinstance(text, str)]
    if len(texts) != len(given):
        raise Refusal(400, "Invalid request: q must be a string or a list of strings")
    if not isinstance(source, str) or not isinstance(target, str):
        raise Refusal(400, "Invalid request: source and target must be language codes")
    try:
        alternatives = max(0, int(fields.get("alternatives", 0) or 0))
    except (TypeError, ValueError):
        raise Refusal(400, "Invalid request: alternatives parameter is not a number") from None
    if alternatives > limits.translate_alternatives_limit:
        limit = limits.translate_alternatives_limit
        raise Refusal(400, f"Invalid request: alternatives parameter must be <= {limit}")
    if batch and len(texts) > limits.translate_batch_limit:
        size, limit = len(texts), limits.translate_batch_limit
        raise Refusal(400, f"Invalid request: request ({size}) exceeds text limit ({limit})")
    for text in texts:
        if len(text) > limits.translate_char_limit:
            size, limit = len(text), limits.translate_char_limit
            raise Refusal(400, f"Invalid request: request ({size}) exceeds text limit ({limit})")
    text_format = fields.get("format") or "text"
    if text_format not in ("text", "html"):
        raise Refusal(400, f"{text_format} format is not supported")

    async with _engine(runtime) as engine:
        detected = None
        if source.lower() == "auto":
            detected = _detect(texts, engine.languages())
            source = detected["language"]
        target = canonical(target)

        async def each(parts: list[str]) -> list[str]:
            done = await engine.translate(parts, source=source, target=target)
            return [result.text for result in done]

        if text_format == "html":
            results = [await translate_html(text, each) for text in texts]
            others: list[list[str]] = [[] for _ in texts]  # LibreTranslate: none for html
        else:
            done = await engine.translate(
                texts, source=source, target=target, alternatives=alternatives
            )
            results = [result.text for result in done]
            others = [list(result.alternatives) for result in done]
    body: dict[str, Any] = {"translatedText": results if batch else results[0]}
    if detected is not None:
        body["detectedLanguage"] = [detected] * len(texts) if batch else detected
    if alternatives > 0:
        body["alternatives"] = others if batch else others[0]
    return body


@asynccontextmanager
async def _engine(runtime: Runtime) -> AsyncIterator[TextTranslator]:
    """The role's engine, leased (and woken if it hibernated) for one request."""
    name = resolve(runtime, Role.TRANSLATION, None)
    timeout = runtime.config.hibernation.wake_timeout_s
    async with runtime.fleet.lease([name], timeout_s=timeout) as engines:
        engine = engines[name]
        assert isinstance(engine, TextTranslator)
        yield engine


def _detect(texts: Sequence[str], served: Sequence[Language]) -> dict[str, Any]:
    """LibreTranslate's answer for ``source = "auto"``: the most likely served language of the
    texts together, with a confidence in percent."""
    try:
        from langdetect import DetectorFactory, detect_langs
        from langdetect.lang_detect_exception import LangDetectException
    except ImportError:
        raise Refusal(
            400,
            "auto is not supported on this server (it needs the langdetect package):"
            " give the source language",
        ) from None
    DetectorFactory.seed = 0  # the same answer every time, as LibreTranslate seeds it
    codes = {lang.code for lang in served}
    try:
        found = detect_langs("\n".join(texts))
    except LangDetectException:
        found = []
    for guess in found:
        code = canonical({"zh-cn": "zh", "zh-tw": "zt"}.get(guess.lang, guess.lang))
        if code in codes:
            return {"confidence": round(guess.prob * 100, 1), "language": code}
    return {"confidence": 0.0, "language": "en"}


def add_translate_routes(app: web.Application) -> None:
    app.router.add_post("/translate", translate)
    app.router.add_get("/languages", languages)
