"""A stand-in for OpenAI-compatible engine servers, backed by the tiny test models.

It stands for a vLLM or llama.cpp server (``POST /v1/chat/completions``, SSE: ``data: {chunk}``
events with ``choices[].delta.content``, ended by ``data: [DONE]``), Groq or speaches
(``POST /v1/audio/transcriptions``, multipart, ``json``/``text``/``verbose_json`` naming the
language as OpenAI does, ``english``; ``POST /v1/audio/translations``, the same less
``language``), and an
OpenAI-style speech server such as Kokoro (``POST /v1/audio/speech``, PCM16 24 kHz streamed as
it is made; ``GET /health`` answering ``{"status": "ok", "model_loaded": ...}``, false until its
models are loaded). Errors use OpenAI's body ``{"error": {"message", "type", "code"}}``; with
``--api-key`` every ``/v1`` call needs ``Authorization: Bearer <key>``. It is the lenient,
idealised server: whisper.cpp's server and the VibeVoice wrapper, which differ from it, have
strict peers of their own (``whisper_cpp_peer.py``, ``vibevoice_peer.py``).

Each API is served only when its model is given: ``--llm`` (tests/fixtures/tiny_llm.py's
folder), ``--whisper`` (tiny_whisper) and ``--piper`` (tiny_piper's .onnx), through the project's
own in-process adapters. ``GET /peer/state`` is for the tests (streams cut short, requests).

Run: ``python -m tests.peers.openai_peer --port 8880 --piper voice.onnx``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import time
import uuid
import wave
from pathlib import Path
from typing import Any, Literal

import numpy as np
from aiohttp import web
from transformers.models.whisper.tokenization_whisper import LANGUAGES

from orchestrator.voice.audio import resample_pcm16, wav_header
from services.base import EngineSpec, Role
from services.piper_tts import PiperEngine
from services.whisper_asr import WhisperEngine
from tests.peers.tiny_lm import TinyLM

OUT_RATE = 24_000


class Peer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.lm: TinyLM | None = None
        self.asr: WhisperEngine | None = None
        self.tts: PiperEngine | None = None
        self.loaded = False
        self.cut_short = 0
        self.requests: list[dict[str, Any]] = []

    async def load(self) -> None:
        args, models = self.args, Path("/nonexistent")
        if args.llm:
            self.lm = await asyncio.to_thread(TinyLM, Path(args.llm))
        if args.whisper:
            spec = EngineSpec("asr", Role.ASR, args.whisper, models, compute_type="int8")
            self.asr = WhisperEngine(spec)
            await self.asr.load()
        if args.piper:
            self.tts = PiperEngine(EngineSpec("tts", Role.TTS, args.piper, models))
            await self.tts.load()
        await asyncio.sleep(args.load_delay)  # VibeVoice takes 10-30 s before model_loaded
        self.loaded = True
        print("models loaded", flush=True)


PEER = web.AppKey("peer", Peer)


def error(status: int, message: str, kind: str, code: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.json_response(body, status=status)


@web.middleware
async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
    peer = request.app[PEER]
    if request.path.startswith("/v1/"):
        peer.requests.append({"path": request.path, "auth": "Authorization" in request.headers})
        key = peer.args.api_key
        if key and request.headers.get("Authorization") != f"Bearer {key}":
            return error(
                401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key"
            )
        if not peer.loaded:
            return error(503, "model is loading", "server_error")
    result: web.StreamResponse = await handler(request)
    return result


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "model_loaded": request.app[PEER].loaded})


async def models(request: web.Request) -> web.Response:
    peer = request.app[PEER]
    names = [
        n for n, m in (("tiny-llm", peer.lm), ("whisper-1", peer.asr), ("tts-1", peer.tts)) if m
    ]
    data = [{"id": n, "object": "model", "created": 0, "owned_by": "peer"} for n in names]
    return web.json_response({"object": "list", "data": data})


async def chat(request: web.Request) -> web.StreamResponse:
    peer = request.app[PEER]
    if peer.lm is None:
        return error(404, "no chat model", "invalid_request_error")
    body = await request.json()
    ident, created = f"chatcmpl-{uuid.uuid4().hex[:12]}", int(time.time())
    ids = peer.lm.prompt_ids(body["messages"])
    limit = int(body.get("max_tokens") or 64)

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        event = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": body.get("model", "tiny-llm"),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {json.dumps(event)}\n\n".encode()

    tokens = peer.lm.generate(ids, max_new=limit, temperature=float(body.get("temperature", 0.8)))
    made = 0

    def usage() -> dict[str, int]:
        return {
            "prompt_tokens": len(ids),
            "completion_tokens": made,
            "total_tokens": len(ids) + made,
        }

    if not body.get("stream"):
        parts = []
        async for delta, _ in tokens:
            parts.append(delta)
            made += 1
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": "".join(parts)},
            "finish_reason": "length" if made >= limit else "stop",
        }
        reply = {"id": ident, "object": "chat.completion", "choices": [choice], "usage": usage()}
        return web.json_response(reply)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    try:
        await response.write(chunk({"role": "assistant", "content": ""}))
        async for delta, _token in tokens:
            made += 1
            await response.write(chunk({"content": delta}))
            await asyncio.sleep(peer.args.token_delay)
        await response.write(chunk({}, "length" if made >= limit else "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):  # a last chunk, no choices
            last = {"id": ident, "object": "chat.completion.chunk", "choices": [], "usage": usage()}
            await response.write(f"data: {json.dumps(last)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        peer.cut_short += 1
        raise
    await response.write_eof()
    return response


async def transcriptions(request: web.Request) -> web.Response:
    return await _recognize(request, "transcribe")


async def translations(request: web.Request) -> web.Response:
    """OpenAI's translations: the same form less ``language``; English text comes back."""
    return await _recognize(request, "translate")


async def _recognize(
    request: web.Request, task: Literal["transcribe", "translate"]
) -> web.Response:
    peer = request.app[PEER]
    if peer.asr is None:
        return error(404, "no transcription model", "invalid_request_error")
    form = await request.post()
    upload = form.get("file")
    if not isinstance(upload, web.FileField):
        return error(400, "file is required", "invalid_request_error")
    with wave.open(io.BytesIO(upload.file.read())) as wav:
        rate, pcm = wav.getframerate(), wav.readframes(wav.getnframes())
    pcm = resample_pcm16(pcm, rate, 16_000) if rate != 16_000 else pcm
    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
    if task == "translate" and "language" in form:  # OpenAI's translation form has none
        return error(
            400, "Unrecognized request argument supplied: language", "invalid_request_error"
        )
    language = str(form["language"]) if "language" in form else None
    options = {"task": task} if task == "translate" else {}
    segments = [s async for s in peer.asr.transcribe(audio, language=language, **options)]
    spoken = next((s.language for s in segments if s.language), None)
    text = "".join(s.text for s in segments)
    fmt = form.get("response_format", "json")
    if fmt == "text":
        return web.Response(text=text)
    if fmt == "verbose_json":
        items = [
            {
                "id": i,
                "start": s.start,
                "end": s.end,
                "text": s.text,
                "no_speech_prob": s.no_speech_prob,
            }
            for i, s in enumerate(segments)
        ]
        return web.json_response(
            {
                "task": task,
                "language": LANGUAGES.get(spoken or "", spoken or ""),  # OpenAI: "english"
                "duration": len(audio) / 16_000,
                "text": text,
                "segments": items,
            }
        )
    return web.json_response({"text": text})


async def speech(request: web.Request) -> web.StreamResponse:
    peer = request.app[PEER]
    if peer.tts is None:
        return error(404, "no speech model", "invalid_request_error")
    body = await request.json()
    text = body.get("input")
    if not isinstance(text, str) or not text.strip():
        return error(400, "input is required", "invalid_request_error")
    as_wav = body.get("response_format") == "wav"
    response = web.StreamResponse(headers={"Content-Type": "audio/wav" if as_wav else "audio/pcm"})
    await response.prepare(request)
    if as_wav:
        await response.write(wav_header(OUT_RATE))
    async for chunk in peer.tts.synthesize(text):
        await response.write(resample_pcm16(chunk.pcm16, chunk.sample_rate, OUT_RATE))
    await response.write_eof()
    return response


async def peer_state(request: web.Request) -> web.Response:
    peer = request.app[PEER]
    return web.json_response({"cut_short": peer.cut_short, "requests": peer.requests})


def create_app(args: argparse.Namespace) -> web.Application:
    app = web.Application(middlewares=[auth])
    app[PEER] = peer = Peer(args)
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/audio/transcriptions", transcriptions)
    app.router.add_post("/v1/audio/translations", translations)
    app.router.add_post("/v1/audio/speech", speech)
    app.router.add_get("/peer/state", peer_state)

    async def loading(app: web.Application) -> Any:
        task = asyncio.create_task(peer.load())
        yield
        task.cancel()

    app.cleanup_ctx.append(loading)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--llm")
    parser.add_argument("--whisper")
    parser.add_argument("--piper")
    parser.add_argument("--api-key")
    parser.add_argument("--load-delay", type=float, default=0.0)
    parser.add_argument("--token-delay", type=float, default=0.0)
    args = parser.parse_args()
    print(f"listening on {args.port}", flush=True)
    web.run_app(create_app(args), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
