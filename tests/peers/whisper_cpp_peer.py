"""A stand-in for whisper.cpp's HTTP server (``whisper-server``), backed by the tiny test Whisper.

Follows ggml-org/whisper.cpp v1.9.3, ``examples/server/server.cpp`` (newer trees move it to
``tools/server/``), served by the cpp-httplib 0.20.0 it bundles (``examples/server/httplib.h``).
What it does, as that source does it:

- It loads its model *before* it binds its port: while it loads at start nothing answers.
- ``POST {request_path}{inference_path}`` (``/inference`` unless ``--inference-path``) takes
  multipart fields ``file`` (WAV; any rate, resampled to 16 kHz), ``language`` (default: the
  ``-l`` it was started with, ``en``; ``auto`` detects), ``detect_language``,
  ``response_format`` (``json`` by default, ``text``, ``srt``, ``vtt``, ``verbose_json``),
  ``translate`` (Whisper's translate task into English; ``verbose_json``'s ``task`` says it),
  ``no_timestamps``, ``no_language_probabilities`` and more it ignores here; ``model`` is not
  one of them (the server holds one model). A model that is not multilingual decodes as ``en``.
  One request at a time (a mutex it shares with ``/load``).
- ``POST {request_path}/load`` (field ``model``: a path) swaps the model; meanwhile
  ``GET {request_path}/health`` is *set* to 503 ``{"status": "loading model"}``; otherwise it is
  200 ``{"status": "ok"}``. A ``/load`` refused (no ``model``, no such file) leaves it loading
  until a ``/load`` succeeds; a model that fails to load ends the process. There is no
  ``/v1/models`` and no ``/v1/audio/transcriptions``.
- Its error handler (``set_error_handler``) runs on every answer of status 400 or more: a 400
  body becomes ``Invalid request`` (text/plain), a 500 keeps its body (``{"error": "failed to
  process audio"}``), and every other status becomes 404 ``File Not Found (<path>)``. So the
  loading 503 reaches the client as a 404, as does an unknown path. Every answer carries
  ``Server: whisper.cpp``.

Not like it: the decoding is faster-whisper's on the tiny random model (the words are noise);
``verbose_json`` names the language by its code (the server writes ``english``); ``srt`` and
``vtt`` are rendered plainly; a language faster-whisper does not know is a 500 here (the server
decodes with a meaningless language token). For the tests: ``--load-gate FILE`` makes each
``/load`` wait until FILE exists, then removes it; ``GET /peer/state`` lists the requests'
fields, whether it is loading and how often ``/health`` answered meanwhile.

Run: ``python -m tests.peers.whisper_cpp_peer --model DIR --port 8080``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web

from orchestrator.voice.audio import resample_pcm16

RATE = 16_000
FORMATS = ("json", "text", "srt", "vtt", "verbose_json")


def load_model(path: str) -> Any:
    from faster_whisper import WhisperModel

    return WhisperModel(path, device="cpu", compute_type="int8", local_files_only=True)


class Server:
    def __init__(self, args: argparse.Namespace, model: Any) -> None:
        self.args = args
        self.model = model
        self.loading = False
        self.lock = asyncio.Lock()  # whisper_mutex: one inference or load at a time
        self.requests: list[dict[str, Any]] = []
        self.health_while_loading = 0


SERVER = web.AppKey("server", Server)


def truthy(value: str) -> bool:
    return value in ("true", "1", "yes", "y")  # parse_str_to_bool


@web.middleware
async def error_handler(request: web.Request, handler: Any) -> web.StreamResponse:
    """cpp-httplib's error handler as server.cpp sets it, on every answer of 400 or more."""
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:  # no route (or the wrong method): httplib's 404
        response = web.Response(status=exc.status)
    if response.status >= 400 and response.status != 500:
        if response.status == 400:
            response = web.Response(status=400, text="Invalid request")
        else:
            response = web.Response(status=404, text=f"File Not Found ({request.path})")
    response.headers["Server"] = "whisper.cpp"
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Headers"] = "content-type, authorization"
    return response


def read_audio(data: bytes) -> np.ndarray | None:
    try:
        with wave.open(io.BytesIO(data)) as wav:
            if wav.getsampwidth() != 2:
                return None
            rate, channels = wav.getframerate(), wav.getnchannels()
            pcm = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError):
        return None
    samples = np.frombuffer(pcm, dtype="<i2")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1).astype("<i2")
    mono = samples.tobytes()
    if rate != RATE:
        mono = resample_pcm16(mono, rate, RATE)
    audio = np.frombuffer(mono, dtype="<i2").astype(np.float32) / 32768
    return audio if audio.size else None


def decode(
    model: Any, audio: np.ndarray, language: str | None, task: str = "transcribe"
) -> tuple[list[Any], str]:
    segments, info = model.transcribe(
        audio, language=language, task=task, beam_size=1, vad_filter=False
    )
    return list(segments), str(info.language)


def stamp(seconds: float, comma: bool) -> str:
    ms = round(seconds * 1000)
    text = f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"
    return text.replace(".", ",") if comma else text


async def inference(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    async with server.lock:
        form = await request.post()
        upload = form.get("file")
        if not isinstance(upload, web.FileField):
            return web.json_response({"error": "no 'file' field in the request"}, status=400)
        fields = {k: str(v) for k, v in form.items() if k != "file"}
        server.requests.append({"path": request.path, "fields": fields})
        audio = read_audio(upload.file.read())
        if audio is None:
            return web.json_response({"error": "failed to read audio data"}, status=400)
        language = fields.get("language", server.args.language)
        if not server.model.model.is_multilingual:
            language = "en"  # "model is not multilingual, ignoring language"
        if truthy(fields.get("detect_language", "false")):
            language = "auto"
        try:
            task = "translate" if truthy(fields.get("translate", "false")) else "transcribe"
            segments, spoken = await asyncio.to_thread(
                decode, server.model, audio, None if language == "auto" else language, task
            )
        except (RuntimeError, ValueError):
            return web.json_response({"error": "failed to process audio"}, status=500)
    fmt = fields.get("response_format", "json")
    text = "".join(f"{s.text}\n" for s in segments)
    if fmt == "text":
        return web.Response(text=text, content_type="text/html", charset="utf-8")
    if fmt in ("srt", "vtt"):
        srt = fmt == "srt"
        blocks = [
            (f"{i + 1}\n" if srt else "")
            + f"{stamp(s.start, srt)} --> {stamp(s.end, srt)}\n{s.text}\n\n"
            for i, s in enumerate(segments)
        ]
        head = "" if srt else "WEBVTT\n\n"
        kind = "application/x-subrip" if srt else "text/vtt"
        return web.Response(text=head + "".join(blocks), content_type=kind)
    if fmt != "verbose_json":
        return web.json_response({"text": text})
    body: dict[str, Any] = {
        "task": task,
        "language": spoken,
        "duration": len(audio) / RATE,
        "text": text,
        "segments": [],
    }
    if not truthy(fields.get("no_language_probabilities", "false")):
        body.update(detected_language=spoken, detected_language_probability=1.0)
        body["language_probabilities"] = {spoken: 1.0}
    timestamps = not truthy(fields.get("no_timestamps", "false"))
    for i, s in enumerate(segments):
        item: dict[str, Any] = {"id": i, "text": s.text}
        if timestamps:
            item.update(start=round(s.start, 2), end=round(s.end, 2))
        item.update(temperature=0.0, avg_logprob=s.avg_logprob, no_speech_prob=s.no_speech_prob)
        body["segments"].append(item)
    return web.json_response(body)


async def load(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    async with server.lock:
        server.loading = True  # and it stays so after a refused /load, as in the server
        form = await request.post()
        model = form.get("model")
        if not isinstance(model, str):
            return web.json_response({"error": "no 'model' field in the request"}, status=400)
        if not Path(model).exists():
            return web.json_response({"error": "model not found!"}, status=400)
        try:
            server.model = await asyncio.to_thread(load_after, server.args.load_gate, model)
        except (RuntimeError, ValueError, OSError):
            print("error: model init  failed, no model loaded must exit", flush=True)
            os._exit(1)
        server.loading = False
    return web.Response(text="Load was successful!", content_type="application/text")


def load_after(gate: str | None, model: str) -> Any:
    """The test's gate first (it holds the server in its loading state), then the model."""
    if gate is not None:
        deadline = time.monotonic() + 60
        while not Path(gate).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        Path(gate).unlink(missing_ok=True)
    return load_model(model)


async def health(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    if server.loading:
        server.health_while_loading += 1
        return web.json_response({"status": "loading model"}, status=503)
    return web.json_response({"status": "ok"})


async def page(request: web.Request) -> web.Response:
    path = request.app[SERVER].args.request_path + request.app[SERVER].args.inference_path
    html = f"<html><head><title>Whisper.cpp Server</title></head><body><h2>{path}</h2></body>"
    return web.Response(text=html, content_type="text/html")


async def preflight(request: web.Request) -> web.Response:
    return web.Response()


async def peer_state(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    return web.json_response(
        {
            "requests": server.requests,
            "loading": server.loading,
            "health_while_loading": server.health_while_loading,
        }
    )


def create_app(args: argparse.Namespace, model: Any) -> web.Application:
    app = web.Application(middlewares=[error_handler], client_max_size=64 * 1024 * 1024)
    app[SERVER] = Server(args, model)
    root = args.request_path
    app.router.add_get(f"{root}/", page)
    app.router.add_route("OPTIONS", root + args.inference_path, preflight)
    app.router.add_post(root + args.inference_path, inference)
    app.router.add_post(f"{root}/load", load)
    app.router.add_get(f"{root}/health", health)
    app.router.add_get("/peer/state", peer_state)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-m", "--model", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("-l", "--language", default="en")
    parser.add_argument("--request-path", default="")
    parser.add_argument("--inference-path", default="/inference")
    parser.add_argument("--load-gate")
    args = parser.parse_args()
    model = load_model(args.model)  # before the port is bound, as the server does
    print(f"whisper server listening at http://{args.host}:{args.port}", flush=True)
    web.run_app(create_app(args, model), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
