"""A stand-in for the community OpenAI-style wrapper of VibeVoice-Realtime-0.5B, backed by the
tiny test Piper voice.

Follows ``vibevoice_realtime_openai_api.py`` of futbolpal/vibevoice-realtime-openai-api at
76bb3768 (a fork of marhensa/vibevoice-realtime-openai-api; FastAPI app "VibeVoice TTS
Server" 1.0.0, port 8880). Microsoft's own realtime demo (a WebSocket) is another protocol.
What it does, as that source does it:

- It loads the model and its voice presets in the app's lifespan, before uvicorn binds the
  port: nothing answers while it loads (a load that fails leaves ``model_loaded`` false).
- ``GET /health``: ``{"status": "ok", "service": ..., "model_loaded": ..., "device": ...,
  "features": {"streaming": false, "formats": [...], "sample_rate": 24000}}``.
- ``GET /v1/audio/voices``: ``{"voices": [{"voice_id", "name", "type", "gender"}]}``, the six
  OpenAI names (alloy, echo, fable, onyx, nova, shimmer; mapped to Carter, Davis, Emma, Frank,
  Grace, Mike) then the presets' short names. ``GET /v1/audio/models``: tts-1 and tts-1-hd.
  There is no ``/v1/models``.
- ``POST /v1/audio/speech`` (``input`` up to 4096 characters, ``voice`` default Carter,
  ``response_format`` default mp3; ``model``, ``speed`` and ``stream`` are ignored) synthesises
  the *whole* utterance inside its ``async`` handler, on the event loop, and only then answers
  with the whole body: while it speaks, the server answers nothing, ``/health`` included. An
  OpenAI name is mapped (any case); any other unknown voice is spoken as Carter, with a
  warning printed and nothing told to the client.
- Errors are FastAPI's: ``{"detail": "..."}`` (400 empty input or unknown format, 500 with the
  exception's text), 422 ``{"detail": [{"type", "loc", "msg", "input"}]}`` for a body that
  fails validation, 404 ``{"detail": "Not Found"}``.

Not like it: the voice is the tiny random Piper voice whatever the preset (resampled to
24 kHz); mp3, opus, flac and aac answer 500 "ffmpeg not found. Please install ffmpeg." (the
wrapper pipes them through ffmpeg). For the tests: ``--hold-file FILE`` keeps the handler
blocked (the loop with it) while FILE exists, ``--load-delay`` lengthens the load, and
``GET /peer/state`` lists the voices asked for and those spoken.

Run: ``python -m tests.peers.vibevoice_peer --model-path voice.onnx --port 8880``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from orchestrator.voice.audio import resample_pcm16, wav_header

RATE = 24_000
PRESETS = {
    "Carter": "en-Carter_man",
    "Davis": "en-Davis_man",
    "Emma": "en-Emma_woman",
    "Frank": "en-Frank_man",
    "Grace": "en-Grace_woman",
    "Mike": "en-Mike_man",
    "Samuel": "in-Samuel_man",
}
OPENAI_NAMES = {
    "alloy": "Carter",
    "echo": "Davis",
    "fable": "Emma",
    "onyx": "Frank",
    "nova": "Grace",
    "shimmer": "Mike",
}
FORMATS = ["mp3", "wav", "opus", "flac", "aac", "pcm"]
MAX_INPUT = 4096


class Wrapper:
    def __init__(self, args: argparse.Namespace) -> None:
        from piper import PiperVoice

        time.sleep(args.load_delay)
        self.args = args
        self.voice = PiperVoice.load(args.model_path)
        self.spoken: list[dict[str, str]] = []

    def resolve(self, voice: str) -> str:
        voice = OPENAI_NAMES.get(voice.lower(), voice)
        if voice not in PRESETS:
            print(f"[warning] Voice '{voice}' not found, using 'Carter'.", flush=True)
            voice = "Carter"
        return voice

    def speak(self, text: str, voice: str) -> bytes:
        """The whole utterance, synthesised right here on the event loop, as the wrapper does."""
        used = self.resolve(voice)
        self.spoken.append({"asked": voice, "used": used})
        print(f"[tts] Generating speech for {len(text)} chars with voice '{used}'", flush=True)
        hold = self.args.hold_file
        while hold is not None and Path(hold).exists():
            time.sleep(0.01)  # the test holds the synthesis: the loop is blocked meanwhile
        pcm = b"".join(c.audio_int16_bytes for c in self.voice.synthesize(text))
        return resample_pcm16(pcm, self.voice.config.sample_rate, RATE)


WRAPPER = web.AppKey("wrapper", Wrapper)


def detail(status: int, message: object) -> web.Response:
    return web.json_response({"detail": message}, status=status)


@web.middleware
async def fastapi_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPNotFound:
        return detail(404, "Not Found")
    except web.HTTPMethodNotAllowed:
        return detail(405, "Method Not Allowed")
    return response


async def health(request: web.Request) -> web.Response:
    features = {"streaming": False, "formats": FORMATS, "sample_rate": RATE}
    return web.json_response(
        {
            "status": "ok",
            "service": "vibevoice-realtime-openai-api",
            "model_loaded": True,
            "device": "cpu",
            "features": features,
        }
    )


async def voices(request: web.Request) -> web.Response:
    listed = [
        {"voice_id": name, "name": name, "type": "openai-compatible", "gender": None}
        for name in OPENAI_NAMES
    ]
    for name, stem in PRESETS.items():
        gender = "female" if "_woman" in stem else "male"
        kind = "vibevoice-native"
        listed.append({"voice_id": name, "name": name, "type": kind, "gender": gender})
    return web.json_response({"voices": listed})


async def models(request: web.Request) -> web.Response:
    data = [
        {"id": name, "object": "model", "created": 1699000000, "owned_by": "vibevoice"}
        for name in ("tts-1", "tts-1-hd")
    ]
    return web.json_response({"object": "list", "data": data})


def invalid(kind: str, field: str | int, message: str, value: object) -> web.Response:
    error = {"type": kind, "loc": ["body", field], "msg": message, "input": value}
    return detail(422, [error])


async def speech(request: web.Request) -> web.Response:
    wrapper = request.app[WRAPPER]
    try:
        body = json.loads(await request.read())
    except ValueError:
        return invalid("json_invalid", 0, "JSON decode error", None)
    if not isinstance(body, dict) or not isinstance(body.get("input"), str):
        return invalid("missing", "input", "Field required", body)
    text, voice = body["input"], body.get("voice", "Carter")
    fmt = body.get("response_format", "mp3")
    if len(text) > MAX_INPUT:
        message = f"String should have at most {MAX_INPUT} characters"
        return invalid("string_too_long", "input", message, text)
    if not isinstance(voice, str) or not isinstance(fmt, str):
        return invalid("string_type", "voice", "Input should be a valid string", voice)
    if not text.strip():
        return detail(400, "Input text is required")
    if fmt.lower() not in FORMATS:
        return detail(400, f"Unsupported format. Supported: {FORMATS}")
    pcm = wrapper.speak(text.strip(), voice)
    if fmt.lower() == "pcm":
        content, kind = pcm, "audio/pcm"
    elif fmt.lower() == "wav":
        content, kind = wav_header(RATE, len(pcm)) + pcm, "audio/wav"
    else:
        return detail(500, "ffmpeg not found. Please install ffmpeg.")
    disposition = {"Content-Disposition": f"attachment; filename=speech.{fmt}"}
    return web.Response(body=content, content_type=kind, headers=disposition)


async def peer_state(request: web.Request) -> web.Response:
    return web.json_response({"spoken": request.app[WRAPPER].spoken})


def create_app(args: argparse.Namespace) -> web.Application:
    app = web.Application(middlewares=[fastapi_errors])
    app[WRAPPER] = Wrapper(args)  # the lifespan's load, before the port is bound
    app.router.add_get("/health", health)
    app.router.add_get("/v1/audio/voices", voices)
    app.router.add_get("/v1/audio/models", models)
    app.router.add_post("/v1/audio/speech", speech)
    app.router.add_get("/peer/state", peer_state)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8880)
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--device", default="cpu", choices=["cuda", "cpu", "mps"])
    parser.add_argument("--hold-file")
    parser.add_argument("--load-delay", type=float, default=0.0)
    args = parser.parse_args()
    print(f"Starting VibeVoice TTS Server on http://{args.host}:{args.port}", flush=True)
    web.run_app(create_app(args), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
