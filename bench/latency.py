"""Time to first audio over ``/v1/realtime``, and what the orchestrator adds on top of the engines.

    python bench/latency.py [--turns 10] [--config FILE]

Without ``--config`` it builds the tiny test engines offline (noise models: the figures measure
the plumbing, not a real model's speed). Each turn streams espeak-ng speech in real time in
100 ms chunks, then silence, and measures:

- ttfa: end of the user's speech -> first audio delta received (includes the end-of-turn
  silence the VAD waits for, ``sessions.end_of_turn_silence_ms``);
- after_stop: the ``speech_stopped`` event -> first audio delta (what the server does once the
  turn has ended: ASR, LLM first sentence, TTS, streaming);
- direct: the same ASR -> LLM -> TTS steps on the same engines called in-process, no server.

It prints p50/p99 of each and the overhead ratio after_stop / direct (medians, one run).
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
from contextlib import aclosing
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
import numpy as np
from harness import KEY, served, tiny_config

from orchestrator.app.runtime import Runtime
from orchestrator.voice.cascade import reply
from services.base import ChatModel, SpeechRecognizer, SpeechSynthesizer

RATE = 24_000
CHUNK_MS = 100
PROMPTS = ["Good morning, can we start?", "What is seven times eight?", "Please repeat that."]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def turn_over_socket(ws: aiohttp.ClientWebSocketResponse, speech: np.ndarray) -> tuple:
    pcm = (speech * 32767).astype(np.int16).tobytes()
    silence = bytes(RATE * 2 * 2)  # 2 s
    step = RATE * CHUNK_MS // 1000 * 2
    speech_end = 0.0
    stopped_at = first_audio = None

    async def send() -> None:
        nonlocal speech_end
        for offset in range(0, len(pcm), step):
            chunk = pcm[offset : offset + step]
            event = {"type": "input_audio_buffer.append", "audio": base64.b64encode(chunk).decode()}
            await ws.send_str(json.dumps(event))
            await asyncio.sleep(CHUNK_MS / 1000)  # real-time pacing, as a microphone sends
        speech_end = time.perf_counter()
        for offset in range(0, len(silence), step):
            event = {
                "type": "input_audio_buffer.append",
                "audio": base64.b64encode(silence[offset : offset + step]).decode(),
            }
            await ws.send_str(json.dumps(event))
            await asyncio.sleep(CHUNK_MS / 1000)

    sender = asyncio.create_task(send())
    while True:
        event = json.loads((await ws.receive()).data)
        if event["type"] == "input_audio_buffer.speech_stopped" and stopped_at is None:
            stopped_at = time.perf_counter()
        elif event["type"] == "response.audio.delta" and first_audio is None:
            first_audio = time.perf_counter()
        elif event["type"] == "response.done":
            break
        elif event["type"] == "error":
            raise RuntimeError(event["error"])
    await sender
    assert stopped_at is not None and first_audio is not None
    return first_audio - speech_end, first_audio - stopped_at


async def direct_turn(runtime: Runtime, speech16: np.ndarray) -> float:
    s = runtime.config.sessions
    asr, llm, tts = (runtime.fleet.engine(n) for n in (s.asr, s.llm, s.tts))
    assert isinstance(asr, SpeechRecognizer) and isinstance(llm, ChatModel)
    assert isinstance(tts, SpeechSynthesizer)
    started = time.perf_counter()
    async with aclosing(asr.transcribe(speech16)) as segments:
        text = "".join([seg.text async for seg in segments])
    messages = [{"role": "system", "content": s.instructions}, {"role": "user", "content": text}]
    async with aclosing(reply(llm, tts, messages, llm_options=s.llm_options)) as pieces:
        async for piece in pieces:
            if piece.audio is not None:
                return time.perf_counter() - started
    raise RuntimeError("no audio")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--config", type=Path)
    args = parser.parse_args()
    from orchestrator.voice import audio
    from tests.speech import speak

    scratch = Path(tempfile.mkdtemp(prefix="vo-latency-"))
    async with served(args.config or tiny_config(scratch)) as server:
        runtime, port = server.runtime, server.port
        speeches = [speak(PROMPTS[i % len(PROMPTS)], RATE) for i in range(args.turns)]
        ttfa, after_stop, direct = [], [], []
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(
                f"http://127.0.0.1:{port}/v1/realtime", headers={"Authorization": f"Bearer {KEY}"}
            )
            await ws.receive()  # session.created
            for speech in speeches:
                total, after = await turn_over_socket(ws, speech)
                ttfa.append(total)
                after_stop.append(after)
                speech16 = audio.decode(
                    audio.wav_header(RATE, len(speech) * 2)
                    + (speech * 32767).astype(np.int16).tobytes(),
                    16_000,
                )
                direct.append(await direct_turn(runtime, speech16))
            await ws.close()
    config = runtime.config
    silence_ms = config.sessions.end_of_turn_silence_ms
    print(
        f"{args.turns} turns, end-of-turn silence {silence_ms} ms, engines: "
        f"{', '.join(f'{n}={e.model}' for n, e in config.engines.items())}"
    )
    print(f"{'stage':<34}{'p50 ms':>9}{'p99 ms':>9}")
    for name, values in (
        ("ttfa (speech end -> first audio)", ttfa),
        ("after_stop (server, turn ended)", after_stop),
        ("direct (engines in-process)", direct),
    ):
        p50, p99 = percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000
        print(f"{name:<34}{p50:>9.0f}{p99:>9.0f}")
    ratio = statistics.median(after_stop) / statistics.median(direct)
    print(f"overhead ratio after_stop / direct (medians): {ratio:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
