"""OpenAI-compatible speech routes: transcriptions, speech and the model list.

Each request leases the engine it needs; a hibernated engine is loaded while the request waits
(bounded by ``hibernation.wake_timeout_s``), and the response says it had to wake in the
``X-Voice-Waking`` header. The official ``openai`` client works against these routes unchanged.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractAsyncContextManager
from typing import Any

from aiohttp import BodyPartReader, web

from orchestrator.api.errors import json_object
from orchestrator.app.runtime import RUNTIME, Runtime
from orchestrator.voice import audio
from services.base import AudioChunk, Engine, Role, SpeechRecognizer, SpeechSynthesizer
from services.errors import InvalidInput

MAX_UPLOAD_BYTES = 25 * 1024 * 1024
MAX_SPEECH_CHARS = 4096
ASR_RATE = 16_000
ALIASES = {
    Role.ASR: {"whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"},
    Role.TTS: {"tts-1", "tts-1-hd", "gpt-4o-mini-tts"},
}
TRANSCRIPT_FORMATS = ("json", "text", "verbose_json")


def resolve(runtime: Runtime, role: Role, model: str | None) -> str:
    """The engine that serves ``model`` for ``role``: its name, an OpenAI alias, or the default."""
    names = runtime.fleet.names_for([role])
    if model in names:
        return model
    if names and (not model or model in ALIASES.get(role, ())):
        return max(names, key=lambda n: runtime.config.engines[n].priority)
    known = sorted([*names, *ALIASES.get(role, ())])
    raise web.HTTPNotFound(text=f"unknown {role} model {model!r}; known: {', '.join(known)}")


async def list_models(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    created = int(time.time())
    data = [
        {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": f"voice-orchestrator:{e.role}",
        }
        for name, e in runtime.config.engines.items()
    ]
    return web.json_response({"object": "list", "data": data})


async def _form(request: web.Request) -> dict[str, Any]:
    if not request.content_type.startswith("multipart/"):
        raise InvalidInput("send the audio as multipart/form-data with a 'file' field")
    fields: dict[str, Any] = {}
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise InvalidInput("nested multipart bodies are not supported")
        if part.name == "file":
            fields["file"] = await _read_limited(part)
        elif part.name:
            fields[part.name] = await part.text()
    if "file" not in fields:
        raise InvalidInput("the form has no 'file' field")
    return fields


async def _read_limited(part: BodyPartReader) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk():
        data += chunk
        if len(data) > MAX_UPLOAD_BYTES:
            raise web.HTTPRequestEntityTooLarge(
                max_size=MAX_UPLOAD_BYTES,
                actual_size=len(data),
                text=f"the audio file is larger than {MAX_UPLOAD_BYTES // 2**20} MB",
            )
    return bytes(data)


async def transcriptions(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    form = await _form(request)
    fmt = form.get("response_format", "json")
    if fmt not in TRANSCRIPT_FORMATS:
        raise InvalidInput(f"response_format must be one of {', '.join(TRANSCRIPT_FORMATS)}")
    name = resolve(runtime, Role.ASR, form.get("model"))
    samples = await asyncio.to_thread(audio.decode, form["file"], ASR_RATE)
    woke: list[str] = []
    async with _lease(runtime, name, woke) as engines:
        engine = engines[name]
        assert isinstance(engine, SpeechRecognizer)
        segments = [s async for s in engine.transcribe(samples, language=form.get("language"))]
    text = "".join(s.text for s in segments).strip()
    headers = _waking(woke)
    if fmt == "text":
        return web.Response(text=text, headers=headers)
    body: dict[str, Any] = {"text": text}
    if fmt == "verbose_json":
        body.update(
            task="transcribe",
            language=form.get("language") or "",
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


async def speech(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    body = await json_object(request)
    text = body.get("input")
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("'input' must be non-empty text")
    if len(text) > MAX_SPEECH_CHARS:
        raise InvalidInput(f"'input' is {len(text)} characters; the limit is {MAX_SPEECH_CHARS}")
    fmt = body.get("response_format", "mp3")
    name = resolve(runtime, Role.TTS, body.get("model"))
    woke: list[str] = []
    async with _lease(runtime, name, woke) as engines:
        engine = engines[name]
        assert isinstance(engine, SpeechSynthesizer)
        chunks = engine.synthesize(text, voice=_voice(body.get("voice")))
        first = await anext(chunks)  # errors before any byte is sent still get a status code
        encoder = audio.StreamEncoder(fmt, first.sample_rate)
        response = web.StreamResponse(
            headers={"Content-Type": encoder.content_type, **_waking(woke)}
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        await _write(response, encoder, first)
        async for chunk in chunks:
            await _write(response, encoder, chunk)
        await response.write(await asyncio.to_thread(encoder.close))
    await response.write_eof()
    return response


def _lease(
    runtime: Runtime, name: str, woke: list[str]
) -> AbstractAsyncContextManager[dict[str, Engine]]:
    """Lease one engine, waking it if needed (bounded); ``woke`` hears what had to load."""
    return runtime.fleet.lease(
        [name], timeout_s=runtime.config.hibernation.wake_timeout_s, on_waking=woke.extend
    )


def _voice(voice: Any) -> str | None:
    # OpenAI voice names (alloy, nova, ...) select nothing in a single-speaker voice.
    return voice if isinstance(voice, str) and voice else None


def _waking(woke: list[str]) -> dict[str, str]:
    return {"X-Voice-Waking": ",".join(woke)} if woke else {}


async def _write(
    response: web.StreamResponse, encoder: audio.StreamEncoder, chunk: AudioChunk
) -> None:
    await response.write(await asyncio.to_thread(encoder.encode, chunk.pcm16))


def add_voice_routes(app: web.Application) -> None:
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/v1/audio/transcriptions", transcriptions)
    app.router.add_post("/v1/audio/speech", speech)
