"""OpenAI-compatible speech routes: transcriptions, translations and speech.

Each request leases the engine it needs; a hibernated engine is loaded while the request waits
(bounded by ``hibernation.wake_timeout_s``), and the response says it had to wake in the
``X-Voice-Waking`` header. The official ``openai`` client works against these routes unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, Literal, TypeVar

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from orchestrator.api.bodies import SpeechBody, TranscriptionForm, TranslationForm, parse
from orchestrator.api.chains import first_that_works, leased_chain
from orchestrator.api.errors import BadRequest, json_object
from orchestrator.api.models import resolve
from orchestrator.app.runtime import RUNTIME
from orchestrator.voice import audio
from services.base import AudioChunk, Engine, Role, Segment, SpeechRecognizer, SpeechSynthesizer

_F = TypeVar("_F", TranscriptionForm, TranslationForm)
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
MAX_FIELD_BYTES = 64 * 1024  # a form's text fields (model, language, prompt...)
ASR_RATE = 16_000


async def _form(request: web.Request, form: type[_F]) -> tuple[bytes, _F]:
    """The uploaded file and the typed text fields, read within ``api.body_timeout_s``."""
    if not request.content_type.startswith("multipart/"):
        raise BadRequest(
            "send the audio as multipart/form-data with a 'file' field", code="invalid_multipart"
        )
    timeout = request.app[RUNTIME].config.api.body_timeout_s
    try:
        async with asyncio.timeout(timeout):
            file, fields = await _read_form(request)
    except TimeoutError:
        raise web.HTTPRequestTimeout(
            text=f"the request body was not received within {timeout:g} s"
        ) from None
    if file is None:
        raise BadRequest(
            "the form has no 'file' field", code="missing_required_parameter", param="file"
        )
    return file, parse(form, fields)


async def _read_form(request: web.Request) -> tuple[bytes | None, dict[str, str]]:
    file: bytes | None = None
    fields: dict[str, str] = {}
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise BadRequest(
                    "nested multipart bodies are not supported", code="invalid_multipart"
                )
            if part.name == "file":
                file = await _read_limited(part, MAX_UPLOAD_BYTES, "the audio file")
            elif part.name:
                data = await _read_limited(part, MAX_FIELD_BYTES, f"the field {part.name!r}")
                fields[part.name] = _utf8(data, part.name)
    except (ValueError, AssertionError, RuntimeError, HttpProcessingError) as exc:
        # aiohttp's multipart reader says "malformed" with these (no boundary, bad framing,
        # bad part headers)
        raise BadRequest(f"malformed multipart body: {exc}", code="invalid_multipart") from None
    return file, fields


def _utf8(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(
            f"the form field {name!r} is not UTF-8 text", code="invalid_encoding", param=name
        ) from None


async def _read_limited(part: BodyPartReader, limit: int, what: str) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk():
        data += chunk
        if len(data) > limit:
            raise web.HTTPRequestEntityTooLarge(
                max_size=limit,
                actual_size=len(data),
                text=f"{what} is larger than {limit} bytes",
            )
    return bytes(data)


async def transcriptions(request: web.Request) -> web.StreamResponse:
    file, form = await _form(request, TranscriptionForm)
    return await _recognize(request, file, form, form.language, "transcribe")


async def translations(request: web.Request) -> web.StreamResponse:
    """Speech in any language as English text: Whisper's translate task."""
    file, form = await _form(request, TranslationForm)
    return await _recognize(request, file, form, None, "translate")


async def _recognize(
    request: web.Request,
    file: bytes,
    form: TranscriptionForm | TranslationForm,
    language: str | None,
    task: Literal["transcribe", "translate"],
) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    fmt = form.response_format
    name = resolve(runtime, Role.ASR, form.model)
    samples = await asyncio.to_thread(audio.decode, file, ASR_RATE, runtime.config.api.max_audio_s)
    woke: list[str] = []
    switched: list[str] = []

    async def recognize(engine: Engine) -> list[Segment]:
        assert isinstance(engine, SpeechRecognizer)
        if task == "translate" and not getattr(engine, "translates", False):
            raise BadRequest(
                f"the speech recognizer {engine.name!r} cannot translate; use a Whisper engine",
                code="unsupported_model",
                param="model",
            )
        options = {"task": task} if task == "translate" else {}
        return [s async for s in engine.transcribe(samples, language=language, **options)]

    async with leased_chain(runtime, Role.ASR, name, form.model, woke, switched) as chain:
        segments = await first_that_works(chain, recognize)
    text = "".join(s.text for s in segments).strip()
    headers = _waking(woke, switched)
    if fmt == "text":
        return web.Response(text=text, headers=headers)
    body: dict[str, Any] = {"text": text}
    if fmt == "verbose_json":
        detected = next((s.language for s in segments if s.language), None)
        body.update(
            task=task,
            language=_language_name(language or detected),
            duration=round(len(samples) / ASR_RATE, 3),
            segments=[
                {
                    "id": i,
                    "start": s.start,
                    "end": s.end,
                    "text": s.text,
                    "no_speech_prob": s.no_speech_prob,
                }
                for i, s in enumerate(segments)
            ],
        )
    return web.json_response(body, headers=headers)


def _language_name(code: str | None) -> str:
    """OpenAI's ``verbose_json`` names the language (``english``); Whisper detects a code."""
    if not code:
        return ""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES  # Whisper's table

    return str(LANGUAGES.get(code.lower(), code))


async def speech(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    body = parse(SpeechBody, await json_object(request, runtime.config.api.body_timeout_s))
    name = resolve(runtime, Role.TTS, body.model)
    woke: list[str] = []
    switched: list[str] = []

    async def start(engine: Engine) -> tuple[AsyncGenerator[AudioChunk, None], AudioChunk]:
        """The engine's stream and its first chunk: errors before any byte may move on."""
        assert isinstance(engine, SpeechSynthesizer)
        native = body.speed != 1.0 and getattr(engine, "native_speed", False)
        speed = {"speed": body.speed} if native else {}
        chunks = engine.synthesize(body.input, voice=body.voice or None, **speed)
        if body.speed != 1.0 and not native:
            chunks = _paced(chunks, body.speed)
        try:
            first = await anext(chunks, None)
        except BaseException:
            await chunks.aclose()
            raise
        if first is None:
            raise BadRequest(
                "'input' has nothing to speak (only punctuation or symbols?)",
                code="nothing_to_speak",
                param="input",
            )
        return chunks, first

    async with leased_chain(runtime, Role.TTS, name, body.model, woke, switched) as chain:
        chunks, first = await first_that_works(chain, start)
        encoder = audio.StreamEncoder(body.response_format, first.sample_rate)
        response = web.StreamResponse(
            headers={
                "Content-Type": encoder.content_type,
                **_waking(woke, switched),
            }
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        await _write(response, encoder, first)
        async for chunk in chunks:
            await _write(response, encoder, chunk)
        await response.write(await asyncio.to_thread(encoder.close))
    await response.write_eof()
    return response


async def _paced(
    chunks: AsyncGenerator[AudioChunk, None], speed: float
) -> AsyncGenerator[AudioChunk, None]:
    """``speed`` for an engine that has no pace of its own: each chunk resampled as if it had
    been recorded ``speed`` times faster (shorter by that much; the pitch moves with it)."""
    async with aclosing(chunks) as stream:
        async for chunk in stream:
            rate = chunk.sample_rate
            faster = await asyncio.to_thread(
                audio.resample_pcm16, chunk.pcm16, round(rate * speed), rate
            )
            yield AudioChunk(pcm16=faster, sample_rate=rate)


def _waking(woke: list[str], switched: list[str]) -> dict[str, str]:
    """What had to load (``X-Voice-Waking``) and which engines stood in (``X-Voice-Fallback``:
    ``failed->next``)."""
    headers = {"X-Voice-Waking": ",".join(woke)} if woke else {}
    return headers | ({"X-Voice-Fallback": ",".join(switched)} if switched else {})


async def _write(
    response: web.StreamResponse, encoder: audio.StreamEncoder, chunk: AudioChunk
) -> None:
    await response.write(await asyncio.to_thread(encoder.encode, chunk.pcm16))


def add_voice_routes(app: web.Application) -> None:
    app.router.add_post("/v1/audio/transcriptions", transcriptions)
    app.router.add_post("/v1/audio/translations", translations)
    app.router.add_post("/v1/audio/speech", speech)
