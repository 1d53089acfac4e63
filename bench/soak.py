"""One long voice session over ``/v1/realtime``: does the server's memory stay flat?

    python bench/soak.py [--minutes 90] [--warmup 10] [--config FILE] [--top 15] [--no-trace]

Simulates a lesson of ``--minutes`` of audio, time-compressed (audio is sent as fast as the
server takes it): turns of espeak-ng speech followed by silence, each answered by a spoken
reply. The client runs in the same process as the server. Prints the process's RSS every
simulated 10 minutes (``--every``) and its growth after the warm-up (``--warmup``, default the
first report: first loads, allocator pools). The conversation's history grows until it fills
its budget (``[sessions] history_tokens``, 3000: some 190 turns, 30 simulated minutes, here),
and each longer prompt needs the LLM a larger working set; ``--warmup 30`` counts the growth
once the history is full.
Tiny test engines unless ``--config``.

It also traces Python's allocations (``tracemalloc``): a snapshot at the end of the warm-up and
one at the end, and prints the ``--top`` sites that grew most in between, so a leak names its
line. Tracing keeps a record per live block, which RSS would count as growth: every RSS figure
is printed as measured and less tracemalloc's own memory (what the growth is judged on).
``--no-trace`` runs without it (faster; the RSS is then the plain one).
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
import tracemalloc
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


def rss_mb(me: psutil.Process) -> tuple[float, float]:
    """The RSS, and the RSS less what tracemalloc itself holds (its traces), in MB."""
    rss = me.memory_info().rss / 1e6
    own = tracemalloc.get_tracemalloc_memory() / 1e6 if tracemalloc.is_tracing() else 0.0
    return rss, rss - own


def growing_sites(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, top: int) -> list[str]:
    """The ``top`` allocation sites that grew most between the snapshots (tracemalloc's own
    frames and the import machinery filtered out)."""
    ignore = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
        tracemalloc.Filter(False, "<unknown>"),
    ]
    stats = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "traceback")
    lines = []
    for stat in sorted(stats, key=lambda s: s.size_diff, reverse=True)[:top]:
        frames = " <- ".join(
            f"{Path(f.filename).name}:{f.lineno}" for f in reversed(stat.traceback)
        )
        lines.append(f"  {stat.size_diff / 1e3:+10.1f} kB {stat.count_diff:+7d} blocks  {frames}")
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=90.0)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--top", type=int, default=15, help="growing sites to print")
    parser.add_argument("--frames", type=int, default=4, help="traceback depth of a site")
    parser.add_argument("--no-trace", action="store_true", help="no tracemalloc")
    parser.add_argument(
        "--every", type=float, default=10.0, help="simulated minutes between reports"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        help="simulated minutes of warm-up, growth counted from the first report after"
        " (default: --every)",
    )
    args = parser.parse_args()
    warmup = (args.every if args.warmup is None else args.warmup) * 60
    from tests.speech import silence, speak

    scratch = Path(tempfile.mkdtemp(prefix="vo-soak-"))
    warm: tracemalloc.Snapshot | None = None
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
        if not args.no_trace:
            tracemalloc.start(args.frames)
        me = psutil.Process()
        every = args.every * 60
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
                    if warm is None and audio_s >= warmup and tracemalloc.is_tracing():
                        warm = tracemalloc.take_snapshot()
                    rss, net = rss_mb(me)
                    samples.append((audio_s / 60, net))
                    print(
                        f"  {audio_s / 60:6.1f} min  RSS {rss:8.1f} MB  less tracemalloc "
                        f"{net:8.1f} MB  turns {turn}",
                        flush=True,
                    )
                    next_report += every
                pcm = turns[turn % len(turns)]
                await send_audio(ws, pcm)
                while True:  # wait for this turn's reply to finish
                    event = json.loads((await ws.receive()).data)
                    if event["type"] in ("response.done", "error"):
                        break
                audio_s += len(pcm) / 2 / RATE
                turn += 1
            await ws.close()
        rss, net = rss_mb(me)
        samples.append((audio_s / 60, net))
        end = tracemalloc.take_snapshot() if warm is not None else None
    after = [net for minute, net in samples[:-1] if minute * 60 >= warmup]
    base = after[0] if after else samples[0][1]
    took = time.perf_counter() - started
    print(f"{audio_s / 60:.1f} simulated minutes, {turn} turns, in {took:.0f} s")
    print(f"RSS after warm-up {base:.1f} MB, at the end {net:.1f} MB: growth {net - base:+.1f} MB")
    if warm is not None and end is not None:
        print(f"top {args.top} growing allocation sites after warm-up (tracemalloc):")
        print("\n".join(growing_sites(warm, end, args.top)))


if __name__ == "__main__":
    asyncio.run(main())
