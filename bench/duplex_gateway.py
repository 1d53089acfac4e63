"""What ``/v1/duplex`` adds per frame over talking to PersonaPlex directly, and the failover gap.

    python bench/duplex_gateway.py [--frames 100] [--rounds 2]

It runs the PersonaPlex test peer (tests/peers/personaplex_peer.py: the real server's protocol,
tiny random Moshi models on the CPU) under the orchestrator's supervisor, beside the tiny test
cascade, and in one run alternates conversations straight to the peer's ``/api/chat`` and
through the gateway's ``/v1/duplex`` (which decodes the client's Ogg Opus to count and keep its
frames, routes it, and passes the Ogg pages on each way). Each frame is sent when the previous
one was answered; its latency is send -> its answering audio decoded. It prints the median and
p90 of both, the gateway's added latency per frame and the ratio gateway / direct (medians),
and the gateway's own CPU time per frame (the client and the server share one event loop: its
CPU time through the gateway less straight to the peer, which the machine's load hardly
changes). Then it kills the peer mid-conversation and prints the failover gap the session
recorded (last PersonaPlex audio -> cascade serving) and the longest wait the client saw for
any frame's answer.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
import numpy as np
import sphn
from harness import KEY, Served, served, tiny_config

RATE, FRAME = 24_000, 1920
QUERY = {"text_prompt": "You are a patient maths tutor.", "voice_prompt": "NATF2.pt"}


class Lockstep:
    """A PersonaPlex-protocol client that sends a frame once the previous one is answered."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.writer = sphn.OpusStreamWriter(RATE)
        self.reader = sphn.OpusStreamReader(RATE)
        self.heard = 0
        self.sent = 0
        self.waits: list[float] = []

    async def talk(self, frames: int) -> None:
        rng = np.random.default_rng(self.sent)
        for _ in range(frames):
            frame = (rng.standard_normal(FRAME) * 0.01).astype(np.float32)
            started = time.perf_counter()
            await self.ws.send_bytes(b"\x01" + self.writer.append_pcm(frame))
            self.sent += 1
            while self.heard < self.sent * FRAME:
                message = await asyncio.wait_for(self.ws.receive(), 60)
                if message.type is not aiohttp.WSMsgType.BINARY:
                    raise RuntimeError(f"connection ended: {message.type}")
                if message.data[:1] == b"\x01":
                    pcm = self.reader.append_bytes(message.data[1:])
                    self.heard += 0 if pcm is None else len(pcm)
            self.waits.append(time.perf_counter() - started)


async def conversation(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> Lockstep:
    ws = await http.ws_connect(url, params=QUERY, headers=headers)
    first = await asyncio.wait_for(ws.receive(), 60)
    if first.data != b"\x00":
        raise RuntimeError(f"no handshake: {first}")
    return Lockstep(ws)


def describe(name: str, waits: list[float]) -> str:
    ordered = sorted(waits)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    return f"{name:<28}{statistics.median(waits) * 1000:>9.2f}{p90 * 1000:>9.2f}"


async def measure(
    server: Served, frames: int, rounds: int
) -> tuple[list[float], list[float], dict[str, Any], float, float]:
    """Per-frame waits direct and through the gateway, then the failover after a SIGKILL; and
    the gateway's CPU per frame (the event loop's CPU time through the gateway less direct)."""
    runtime = server.runtime
    await runtime.fleet.load("duplex")
    await asyncio.gather(*(runtime.fleet.load(n) for n in ("vad", "asr", "llm", "tts")))
    engine = runtime.fleet.engine("duplex")
    direct_url = f"{engine.base_url}/api/chat"  # type: ignore[attr-defined]
    gateway_url = f"http://127.0.0.1:{server.port}/v1/duplex"
    auth = {"Authorization": f"Bearer {KEY}"}
    direct: list[float] = []
    gateway: list[float] = []
    cpu = {"direct": 0.0, "gateway": 0.0}
    async with aiohttp.ClientSession() as http:
        for _ in range(rounds):
            for arm, url, headers, waits in (
                ("direct", direct_url, {}, direct),
                ("gateway", gateway_url, auth, gateway),
            ):
                client = await conversation(http, url, headers)
                await client.talk(5)  # warm-up frames are not counted
                client.waits.clear()
                started = time.thread_time()
                await client.talk(frames)
                cpu[arm] += time.thread_time() - started
                waits.extend(client.waits)
                await client.ws.close()

        moved = runtime.bus.subscribe()
        client = await conversation(http, gateway_url, auth)
        await client.talk(10)
        os.kill(engine.process.pid, signal.SIGKILL)  # type: ignore[attr-defined]
        client.waits.clear()
        failover = asyncio.create_task(
            anext(e async for e in moved if e.type == "session.failover")
        )
        while not failover.done():
            await client.talk(1)
        await client.talk(10)
        event = failover.result().data
        longest = max(client.waits)
        await client.ws.close()
        moved.close()
    cpu_ms = (cpu["gateway"] - cpu["direct"]) / (rounds * frames) * 1000
    return direct, gateway, event, longest, cpu_ms


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="vo-duplex-"))
    from tests.duplex_helpers import duplex_toml

    async with served(tiny_config(scratch, duplex_toml(scratch))) as server:
        direct, gateway, event, longest, cpu_ms = await measure(server, args.frames, args.rounds)

    print(f"{args.rounds} rounds x {args.frames} frames of 80 ms each way, lockstep")
    print(f"{'per-frame latency':<28}{'p50 ms':>9}{'p90 ms':>9}")
    print(describe("direct to the peer", direct))
    print(describe("through /v1/duplex", gateway))
    added = (statistics.median(gateway) - statistics.median(direct)) * 1000
    ratio = statistics.median(gateway) / statistics.median(direct)
    print(f"gateway adds {added:.2f} ms per frame; ratio gateway / direct (medians): {ratio:.2f}")
    print(f"the gateway's own CPU per frame (its event loop's time): {cpu_ms:.2f} ms")
    print(
        f"failover after SIGKILL: gap {event['gap_s'] * 1000:.0f} ms (detect "
        f"{event['detect_s'] * 1000:.0f} ms + switch {event['switch_s'] * 1000:.0f} ms), "
        f"context {event['context_chars']} chars; the client's longest wait for a frame's "
        f"answer: {longest * 1000:.0f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
