"""One long voice session over ``/v1/realtime``: does the server's memory stay flat?

    python bench/soak.py [--minutes 90] [--config FILE]

Simulates a lesson of ``--minutes`` of audio, time-compressed (audio is sent as fast as the
server takes it): turns of espeak-ng speech followed by silence, each answered by a spoken
reply. The client runs in the same process as the server. Prints the process's RSS every
simulated 10 minutes and its growth after the first 10 (warm-up: first loads, allocator pools).
Tiny test engines unless ``--config``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
import numpy as np
import psutil
from harness import KEY, served, tiny_config
from latency import PROMPTS, RATE

CHUNK = RATE // 10 * 2  # 100 ms of PCM16


async def send_audio(ws: aiohttp.ClientWebSocketResponse, pcm: bytes) -> None:
    for offset in range(0, len(pcm), CHUNK):
        chunk = base64.b64encode(pcm[offset : offset + CHUNK]).decode()
        await ws.send_str(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=90.0)
    parser.add_argument("--config", type=Path)
    args = parser.parse_args()
    from tests.speech import silence, speak

    scratch = Path(tempfile.mkdtemp(prefix="vo-soak-"))
    async with served(args.config or tiny_config(scratch)) as server:
        port = server.port
        turns = [
            (
                (np.concatenate([speak(p, RATE), silence(8.0, RATE)]) * 32767)
                .astype(np.int16)
                .tobytes()
            )
            for p in PROMPTS
        ]
        me = psutil.Process()
        audio_s, next_report, turn = 0.0, 0.0, 0
        samples: list[tuple[float, float]] = []
        started = time.perf_counter()
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(
                f"http://127.0.0.1:{port}/v1/realtime", headers={"Authorization": f"Bearer {KEY}"}
            )
            await ws.receive()  # session.created
            while audio_s < args.minutes * 60:
                if audio_s >= next_report:
                    rss = me.memory_info().rss / 1e6
                    samples.append((audio_s / 60, rss))
                    print(f"  {audio_s / 60:6.1f} min  RSS {rss:8.1f} MB  turns {turn}", flush=True)
                    next_report += 600
                pcm = turns[turn % len(turns)]
                await send_audio(ws, pcm)
                while True:  # wait for this turn's reply to finish
                    event = json.loads((await ws.receive()).data)
                    if event["type"] in ("response.done", "error"):
                        break
                audio_s += len(pcm) / 2 / RATE
                turn += 1
            await ws.close()
        rss = me.memory_info().rss / 1e6
        samples.append((audio_s / 60, rss))
    base = samples[1][1] if len(samples) > 2 else samples[0][1]
    took = time.perf_counter() - started
    print(f"{audio_s / 60:.1f} simulated minutes, {turn} turns, in {took:.0f} s")
    print(f"RSS after warm-up {base:.1f} MB, at the end {rss:.1f} MB: growth {rss - base:+.1f} MB")


if __name__ == "__main__":
    asyncio.run(main())
