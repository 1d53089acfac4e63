"""What the gateway costs a request, and how long a student waits for a stopped host.

    python bench/gateway.py [--requests 20] [--messages 50] [--json]

A real orchestrator on the tiny test engines (built offline: the figures measure plumbing and
start-up, not a real model's speed) is the host, run by the ``local`` provider; the gateway runs
in this process in front of it. Printed:

- cold_request_s: host stopped -> the first transcription through the gateway is served;
- rest_overhead_ratio: median latency of the same transcription through the gateway / straight
  to the host, requests alternated so both see the same machine;
- realtime_frame_overhead_ms: p50 through the gateway minus p50 direct, for one audio message
  (``input_audio_buffer.append`` of 100 ms) followed by ``input_audio_buffer.clear`` and its
  ``cleared`` answer: what the proxy adds to a round trip of one audio message;
- cold_realtime_first_audio_s: host stopped -> a Realtime session opened at once, a spoken
  push-to-talk turn sent at once -> the first audio delta.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.pop("VO_API_KEYS", None)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
import numpy as np
from harness import gateway_config, tiny_config

from orchestrator.config import load_config
from orchestrator.config.secrets import Secrets
from orchestrator.gateway.lifecycle import HostState
from orchestrator.gateway.serve import GatewayServer
from tests.test_voice_api import wav_bytes

CLIENT_KEY, HOST_KEY = "bench-client-key", "bench-host-key"
RATE = 24_000
PUSH_TO_TALK = json.dumps({"type": "session.update", "session": {"turn_detection": None}})


def spoken_chunks(text: str) -> list[str]:
    from tests.speech import silence, speak

    samples = np.concatenate([speak(text, RATE), silence(0.5, RATE)])
    pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes()
    step = RATE // 5  # 100 ms
    return [base64.b64encode(pcm[i : i + step]).decode() for i in range(0, len(pcm), step)]


async def transcribe(http: aiohttp.ClientSession, base: str, key: str, audio: bytes) -> float:
    form = aiohttp.FormData()
    form.add_field("model", "whisper-1")
    form.add_field("file", audio, filename="a.wav", content_type="audio/wav")
    started = time.perf_counter()
    async with http.post(
        f"{base}/v1/audio/transcriptions", data=form, headers={"Authorization": f"Bearer {key}"}
    ) as reply:
        await reply.read()
        if reply.status != 200:
            raise SystemExit(f"{base}: transcription answered {reply.status}")
    return time.perf_counter() - started


async def until(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, object]:
    while True:
        message = await ws.receive(timeout=300)
        if message.type is not aiohttp.WSMsgType.TEXT:
            raise SystemExit(f"socket ended waiting for {kind}: {message}")
        event: dict[str, object] = json.loads(message.data)
        if event["type"] == kind:
            return event
        if event["type"] == "error":
            raise SystemExit(f"error waiting for {kind}: {event}")


async def message_round_trips(
    http: aiohttp.ClientSession, base: str, key: str, n: int
) -> list[float]:
    chunk = base64.b64encode(bytes(RATE // 10 * 2)).decode()  # 100 ms of PCM16 silence
    async with http.ws_connect(
        f"{base}/v1/realtime", headers={"Authorization": f"Bearer {key}"}
    ) as ws:
        await until(ws, "session.created")
        await ws.send_str(
            json.dumps({"type": "session.update", "session": {"turn_detection": None}})
        )
        await until(ws, "session.updated")
        times = []
        for _ in range(n):
            started = time.perf_counter()
            await ws.send_str(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
            await ws.send_str(json.dumps({"type": "input_audio_buffer.clear"}))
            await until(ws, "input_audio_buffer.cleared")
            times.append(time.perf_counter() - started)
        return times


async def cold_realtime(http: aiohttp.ClientSession, base: str) -> float:
    chunks = spoken_chunks("Hello teacher, can we start the lesson?")
    started = time.perf_counter()
    async with http.ws_connect(
        f"{base}/v1/realtime", headers={"Authorization": f"Bearer {CLIENT_KEY}"}
    ) as ws:
        await ws.send_str(
            json.dumps({"type": "session.update", "session": {"turn_detection": None}})
        )
        for chunk in chunks:
            await ws.send_str(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
        await ws.send_str(json.dumps({"type": "input_audio_buffer.commit"}))
        await ws.send_str(json.dumps({"type": "response.create"}))
        while True:
            message = await ws.receive(timeout=300)
            if message.type is not aiohttp.WSMsgType.TEXT:
                raise SystemExit(f"socket ended before audio: {message}")
            kind = json.loads(message.data)["type"]
            if kind in ("response.audio.delta", "response.output_audio.delta"):
                return time.perf_counter() - started


async def main(args: argparse.Namespace) -> dict[str, float]:
    scratch = Path(tempfile.mkdtemp(prefix="vo-bench-gateway-"))
    host_file = tiny_config(scratch)
    host_port = load_config(config_file=host_file, environ={}).server.api_port
    direct = f"http://127.0.0.1:{host_port}"
    config = load_config(config_file=gateway_config(scratch, host_file), environ={})
    server = GatewayServer(config, Secrets((CLIENT_KEY,), "x"), HOST_KEY)
    await server.start()
    audio = wav_bytes()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http:
            cold_request = await transcribe(http, server.url, CLIENT_KEY, audio)
            await transcribe(http, direct, HOST_KEY, audio)  # warm both paths once
            through, straight = [], []
            for _ in range(args.requests):
                through.append(await transcribe(http, server.url, CLIENT_KEY, audio))
                straight.append(await transcribe(http, direct, HOST_KEY, audio))
            frames_gw = await message_round_trips(http, server.url, CLIENT_KEY, args.messages)
            frames_direct = await message_round_trips(http, direct, HOST_KEY, args.messages)

            await server.controller.stop("bench: cold start")
            while server.controller.snapshot().state is not HostState.STOPPED:
                await server.controller.settle()
            cold_first_audio = await cold_realtime(http, server.url)
    finally:
        await server.stop()
    return {
        "cold_request_s": round(cold_request, 2),
        "rest_overhead_ratio": round(statistics.median(through) / statistics.median(straight), 3),
        "rest_gateway_p50_ms": round(statistics.median(through) * 1000, 1),
        "rest_direct_p50_ms": round(statistics.median(straight) * 1000, 1),
        "realtime_frame_overhead_ms": round(
            (statistics.median(frames_gw) - statistics.median(frames_direct)) * 1000, 2
        ),
        "cold_realtime_first_audio_s": round(cold_first_audio, 2),
        "requests": args.requests,
        "messages": args.messages,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    figures = asyncio.run(main(parser.parse_args()))
    if parser.parse_args().json:
        print(json.dumps(figures))
    else:
        for name, value in figures.items():
            print(f"{name:30} {value}")
