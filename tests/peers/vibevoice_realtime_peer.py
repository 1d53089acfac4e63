"""A stand-in for Microsoft's VibeVoice-Realtime demo server, with a tone for a voice.

It follows microsoft/VibeVoice at e73d1e17 (2026-04-24): ``demo/vibevoice_realtime_demo.py``
(the command line) and ``demo/web/app.py`` (the FastAPI app; last changed in 0aa8cb4c,
2026-02-03). What it does, as that source does it:

- The command line is ``--port`` (3000), ``--model_path`` (the hub id
  ``microsoft/VibeVoice-Realtime-0.5B``), ``--device`` (cpu, cuda, mpx, mps; cuda) and
  ``--reload``; the server listens on 0.0.0.0 whatever else is asked. The app loads the model
  and the voice presets at start-up, before the port is bound: nothing answers while it loads.
  The presets are the ``*.pt`` files under ``voices/streaming_model`` beside the ``web``
  folder (found recursively; none is a start-up error); the default is ``VOICE_PRESET`` if it
  names one, else ``en-Carter_man``, else the first.
- ``GET /config``: ``{"voices": [sorted preset names], "default_voice": name}``; ``GET /``
  is the demo page.
- ``WS /stream?text=..&voice=..&cfg=..&steps=..``: the socket is accepted first. A stream while
  another runs gets one log message ``backend_busy`` and close 1013 "Service busy" (one stream
  at a time, never queued). Otherwise: log ``backend_request_received`` (text_length,
  cfg_scale, inference_steps, voice), then the audio as binary messages, each one chunk of
  PCM16 mono 24 kHz (a float chunk clipped to [-1, 1] and scaled by 32767), with logs between
  them: ``model_progress`` (generated_sec, chunk_sec) as each chunk is made, and
  ``backend_first_chunk_sent`` after the first; at the end ``backend_stream_complete``, then a
  normal close (1000). A failed generation sends ``generation_error`` and ``backend_error``
  (message) before ``backend_stream_complete`` and the same normal close. An unknown voice is
  spoken with the default voice without a word; bad ``cfg``/``steps`` fall back to 1.5 and the
  server's steps (5); an empty text streams no audio. Each log is ``{"type": "log", "event",
  "data", "timestamp"}`` (UTC+8, milliseconds).
- The app never reads the socket: a client that closes is noticed when the next chunk cannot
  be sent (uvicorn's websockets layer answers the close handshake itself, as the reader task
  here does), logged ``client_disconnected``, and the generation stops.

Not like it: the "model" is a 220 Hz tone, one chunk of 3200 samples (a 7.5 Hz latent frame)
per 8 characters of text, made at once; ``cfg``/``steps`` are only recorded. For the tests,
beside the real routes: ``POST /peer/control`` (JSON ``hold_before``: stop before that chunk
of every stream until released with null; ``fail_after``: the next stream fails after that
many chunks), ``GET /peer/state`` (the streams and counters) and ``GET /peer/wait?NAME=N``
(answers once counter NAME reached N, so tests wait on an event). ``--voices-dir`` replaces
the folder beside the script (the script here is not in ``demo/``).

Run: ``python -m tests.peers.vibevoice_realtime_peer --port 3000 --voices-dir DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

SAMPLE_RATE = 24_000
FRAME = 3200  # samples per chunk: one 7.5 Hz acoustic latent
DEFAULT_VOICE = "en-Carter_man"


@dataclass
class Counters:
    streams: int = 0  # streams that started generating
    held: int = 0  # times a stream reached the hold
    busy: int = 0
    complete: int = 0
    disconnected: int = 0
    failed: int = 0
    finished: int = 0  # streams whose handler is done (the lock released)


@dataclass
class Stream:
    text: str
    voice: str
    cfg: float
    steps: int | None
    chunks: int = 0
    outcome: str = "in_progress"


@dataclass
class Peer:
    presets: dict[str, Path]
    default_voice: str
    counters: Counters = field(default_factory=Counters)
    streams: list[Stream] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    hold_before: int | None = None
    fail_after: int | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)
    _watchers: list[asyncio.Future[None]] = field(default_factory=list)

    def changed(self) -> None:
        watchers, self._watchers = self._watchers, []
        for watcher in watchers:
            if not watcher.done():
                watcher.set_result(None)

    async def until(self, name: str, value: int) -> None:
        while int(getattr(self.counters, name)) < value:
            watcher = asyncio.get_running_loop().create_future()
            self._watchers.append(watcher)
            await watcher


PEER = web.AppKey("peer", Peer)


def timestamp() -> str:
    zone = datetime.timezone(datetime.timedelta(hours=8))
    return (
        datetime.datetime.now(datetime.UTC).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    )


def load_presets(voices_dir: Path) -> dict[str, Path]:
    if not voices_dir.exists():
        raise RuntimeError(f"Voices directory not found: {voices_dir}")
    presets = {path.stem: path for path in voices_dir.rglob("*.pt")}
    if not presets:
        raise RuntimeError(f"No voice preset (.pt) files found in {voices_dir}")
    print(f"[startup] Found {len(presets)} voice presets", flush=True)
    return dict(sorted(presets.items()))


def pick_default(presets: dict[str, Path]) -> str:
    name = os.environ.get("VOICE_PRESET")
    if name and name in presets:
        return name
    return DEFAULT_VOICE if DEFAULT_VOICE in presets else next(iter(presets))


def log_message(event: str, **data: Any) -> str:
    return json.dumps({"type": "log", "event": event, "data": data, "timestamp": timestamp()})


def pcm16(chunk: np.ndarray) -> bytes:
    """``chunk_to_pcm16``: clip to [-1, 1], scale by 32767, int16."""
    return (np.clip(chunk, -1.0, 1.0) * 32767.0).astype(np.int16).tobytes()


async def tone(peer: Peer, stream: Stream, logs: list[str]) -> AsyncIterator[np.ndarray]:
    """The "model": chunks of a tone, ``model_progress`` queued as each is made; the hold and
    the failure the tests ask for."""
    count = max(1, math.ceil(len(stream.text.strip()) / 8))
    fail_after, peer.fail_after = peer.fail_after, None
    t = np.arange(FRAME) / SAMPLE_RATE
    for index in range(count):
        if peer.hold_before is not None and index == peer.hold_before:
            peer.counters.held += 1
            peer.changed()
            print(f"[peer] holding before chunk {index}", flush=True)
            await peer.release.wait()
        if fail_after is not None and index >= fail_after:
            message = "CUDA out of memory (the peer was told to fail)"
            logs.append(log_message("generation_error", message=message))
            raise RuntimeError(message)
        chunk = (0.3 * np.sin(2 * np.pi * 220.0 * (t + index * FRAME / SAMPLE_RATE))).astype(
            np.float32
        )
        generated = (index + 1) * FRAME / SAMPLE_RATE
        logs.append(
            log_message("model_progress", generated_sec=generated, chunk_sec=FRAME / SAMPLE_RATE)
        )
        yield chunk


async def flush(ws: web.WebSocketResponse, logs: list[str]) -> None:
    while logs:
        try:
            await ws.send_str(logs.pop(0))
        except Exception:
            break


async def stream_route(request: web.Request) -> web.WebSocketResponse:
    peer = request.app[PEER]
    ws = web.WebSocketResponse(autoclose=True)
    await ws.prepare(request)  # accepted before anything is checked, as ``ws.accept()``
    reader = asyncio.ensure_future(_answer_close(ws))  # uvicorn's websockets layer
    try:
        await handle(peer, ws, request.query)
    finally:
        reader.cancel()
    return ws


async def _answer_close(ws: web.WebSocketResponse) -> None:
    """What the app never does, its server does: read frames, answer a close handshake."""
    async for message in ws:
        if message.type is WSMsgType.ERROR:
            break


async def handle(peer: Peer, ws: web.WebSocketResponse, query: Any) -> None:
    text = query.get("text", "")
    print(f"Client connected, text={text!r}", flush=True)
    try:
        cfg = float(query["cfg"]) if "cfg" in query else 1.5
    except ValueError:
        cfg = 1.5
    cfg = 1.5 if cfg <= 0 else cfg
    try:
        steps: int | None = int(query["steps"]) if "steps" in query else None
        steps = None if steps is not None and steps <= 0 else steps
    except ValueError:
        steps = None
    voice = query.get("voice")
    if peer.lock.locked():
        peer.counters.busy += 1
        peer.changed()
        print("Please wait for the other requests to complete.", flush=True)
        message = {"message": "Please wait for the other requests to complete."}
        await ws.send_str(
            json.dumps(
                {"type": "log", "event": "backend_busy", "data": message, "timestamp": timestamp()}
            )
        )
        await ws.close(code=1013, message=b"Service busy")
        return
    async with peer.lock:
        try:
            await generate(peer, ws, text, voice, cfg, steps)
        finally:
            peer.counters.finished += 1
            peer.changed()


async def generate(
    peer: Peer,
    ws: web.WebSocketResponse,
    text: str,
    voice: str | None,
    cfg: float,
    steps: int | None,
) -> None:
    logs = [
        log_message(
            "backend_request_received",
            text_length=len(text or ""),
            cfg_scale=cfg,
            inference_steps=steps,
            voice=voice,
        )
    ]
    used = voice if voice in peer.presets else peer.default_voice
    stream = Stream(text.replace("\u2019", "'"), used, cfg, steps)
    await flush(ws, logs)
    chunks: AsyncIterator[np.ndarray] | None = None
    if text.strip():
        peer.streams.append(stream)
        peer.counters.streams += 1
        peer.changed()
        chunks = tone(peer, stream, logs)
    try:
        while chunks is not None:  # (the real loop's client_state never changes: it never reads)
            await flush(ws, logs)
            chunk = await anext(chunks, None)
            if chunk is None:
                break
            await ws.send_bytes(pcm16(chunk))
            stream.chunks += 1
            if stream.chunks == 1:
                logs.append(log_message("backend_first_chunk_sent"))
            await flush(ws, logs)
        stream.outcome = "complete"
        peer.counters.complete += 1
    except ConnectionError:
        print("Client disconnected (WebSocketDisconnect)", flush=True)
        logs.append(log_message("client_disconnected"))
        stream.outcome = "client_disconnected"
        peer.counters.disconnected += 1
    except Exception as exc:
        print(f"Error in websocket stream: {exc}", flush=True)
        logs.append(log_message("backend_error", message=str(exc)))
        stream.outcome = f"error: {exc}"
        peer.counters.failed += 1
    finally:
        logs.append(log_message("backend_stream_complete"))
        await flush(ws, logs)
        if not ws.closed:
            await ws.close()
        print("WS handler exit", flush=True)


async def config_route(request: web.Request) -> web.Response:
    peer = request.app[PEER]
    return web.json_response({"voices": sorted(peer.presets), "default_voice": peer.default_voice})


async def index(request: web.Request) -> web.Response:
    return web.Response(text="<html><body>VibeVoice (peer)</body></html>", content_type="text/html")


async def control(request: web.Request) -> web.Response:
    peer = request.app[PEER]
    body = await request.json()
    if "hold_before" in body:
        peer.hold_before = body["hold_before"]
        if peer.hold_before is None:
            peer.release.set()
        else:
            peer.release.clear()
    if "fail_after" in body:
        peer.fail_after = body["fail_after"]
    return web.json_response({"ok": True})


async def state(request: web.Request) -> web.Response:
    peer = request.app[PEER]
    streams = [asdict(stream) for stream in peer.streams]
    return web.json_response({"counters": asdict(peer.counters), "streams": streams})


async def wait(request: web.Request) -> web.Response:
    peer = request.app[PEER]
    for name, value in request.query.items():
        await peer.until(name, int(value))
    return web.json_response(asdict(peer.counters))


def create_app(voices_dir: Path) -> web.Application:
    model_path = os.environ.get("MODEL_PATH")
    if not model_path:
        raise RuntimeError("MODEL_PATH not set in environment")
    print(f"[startup] Loading processor from {model_path}", flush=True)
    presets = load_presets(voices_dir)
    app = web.Application()
    app[PEER] = Peer(presets, pick_default(presets))
    print("[startup] Model ready.", flush=True)
    app.router.add_get("/", index)
    app.router.add_get("/config", config_route)
    app.router.add_get("/stream", stream_route)
    app.router.add_post("/peer/control", control)
    app.router.add_get("/peer/state", state)
    app.router.add_get("/peer/wait", wait)
    return app


PRESETS = ("en-Carter_man", "en-Davis_man", "en-Emma_woman", "in-Samuel_man")
DEMO_SCRIPT = '''"""Stands in for demo/vibevoice_realtime_demo.py: runs the peer."""
import sys

sys.path.insert(0, {root!r})
from tests.peers.vibevoice_realtime_peer import main  # noqa: E402

main()
'''


def make_checkout(folder: Path) -> Path:
    """A VibeVoice checkout as the engine and the installer look at it, its demo script
    running this peer: ``demo/vibevoice_realtime_demo.py``, ``demo/web/app.py`` and
    ``demo/voices/streaming_model/*.pt`` (empty: the peer only lists them)."""
    root = Path(__file__).resolve().parent.parent.parent
    demo = folder / "demo"
    (demo / "web").mkdir(parents=True, exist_ok=True)
    (demo / "vibevoice_realtime_demo.py").write_text(DEMO_SCRIPT.format(root=str(root)))
    (demo / "web" / "app.py").write_text("# the peer stands in for the app\n")
    voices = demo / "voices" / "streaming_model"
    voices.mkdir(parents=True, exist_ok=True)
    for name in PRESETS:
        (voices / f"{name}.pt").write_bytes(b"")
    return folder


def main(argv: list[str] | None = None, voices_dir: Path | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--model_path", type=str, default="microsoft/VibeVoice-Realtime-0.5B")
    parser.add_argument("--device", type=str, default="cuda", choices=["cpu", "cuda", "mpx", "mps"])
    parser.add_argument("--reload", action="store_true")
    parser.add_argument("--voices-dir", type=Path, default=voices_dir)
    args = parser.parse_args(argv)
    os.environ["MODEL_PATH"] = args.model_path
    os.environ["MODEL_DEVICE"] = args.device
    folder = args.voices_dir or Path(sys.argv[0]).resolve().parent / "voices" / "streaming_model"
    app = create_app(folder)  # the start-up event: loaded before the port is bound
    web.run_app(app, host="0.0.0.0", port=args.port, print=None)


if __name__ == "__main__":
    main()
