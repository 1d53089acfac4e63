"""How fast a student hears the bridge while the host wakes, and what the hand-over costs.

    python bench/bridge.py [--turns 3] [--json]

The gateway runs in this process with ``[gateway.bridge]`` on: the bridge and the host are
each a real ``python -m orchestrator serve`` on the tiny test engines (built offline: the
figures measure plumbing and start-up, not a real model's speed), the host run by the
``local`` provider and stopped at the start. Printed:

- bridge_ready_s: the gateway started -> its bridge is ready: ``/health/ready`` answers and a
  warm-up session opened, so every engine a session uses is loaded (it is started with the
  gateway, so this is paid once, before any student comes);
- bridge_first_audio_s: host stopped, bridge warm -> a Realtime session opened at once, a
  spoken push-to-talk turn sent at once -> the first audio delta (the bridge's);
- host_ready_s: that session's opening (which woke the host) -> the host READY;
- handover_gap_ms: the gap in the conversation at the hand-over, as the gateway measures it
  (``gap_s`` of ``session.backend_changed``): from the turn boundary, when the client's
  messages stop going to the bridge, to the host taking them (its session opened, the
  conversation replayed). A turn the client sends in that window waits this long at most;
- first_host_turn_extra_ms: what a client saw: the next turn is sent the instant the client
  hears the host is READY (``/v1/host``'s event, which may come after the gateway began the
  move), and its first-audio latency (from ``response.create``) minus the median of
  ``--turns`` later turns on the host; near zero when the move was over before the turn came;
- steady_turn_first_audio_ms, bridge_turn_first_audio_ms: a typed turn's first audio on the
  host (median) and on the bridge (the turn before the move);
- bridge_rss_mb: the bridge process tree's resident memory after its turns (psutil), with the
  tiny engines: the cpu profile's real models need far more (see README "The bridge").
"""

from __future__ import annotations

import argparse
import asyncio
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
from gateway import CLIENT_KEY, HOST_KEY, spoken_chunks
from harness import gateway_config, tiny_config

from orchestrator.config import load_config
from orchestrator.config.secrets import Secrets
from orchestrator.gateway.lifecycle import HostState
from orchestrator.gateway.serve import GatewayServer

AUDIO = ("response.audio.delta", "response.output_audio.delta")
MOVE_WAIT_S = 180.0  # turns on the bridge after READY, at most, before the move must be done
CHANGES: list[dict[str, object]] = []  # every session.backend_changed the client got


def send(ws: aiohttp.ClientWebSocketResponse, kind: str, **fields: object) -> object:
    return ws.send_str(json.dumps({"type": kind, **fields}))


async def first_audio(ws: aiohttp.ClientWebSocketResponse, started: float) -> float:
    """Seconds from ``started`` to the next audio delta; reads on to the ``response.done``."""
    heard: float | None = None
    while True:
        message = await ws.receive(timeout=300)
        if message.type is not aiohttp.WSMsgType.TEXT:
            raise SystemExit(f"socket ended in a turn: {message}")
        event = json.loads(message.data)
        if event["type"] in AUDIO and heard is None:
            heard = time.perf_counter() - started
        elif event["type"] == "session.backend_changed":
            CHANGES.append(event)
        elif event["type"] == "error":
            raise SystemExit(f"error in a turn: {event}")
        elif event["type"] == "response.done":
            if heard is None:
                raise SystemExit(f"a turn ended without audio: {event}")
            return heard


async def typed_turn(ws: aiohttp.ClientWebSocketResponse, text: str) -> float:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    await send(ws, "conversation.item.create", item=item)
    started = time.perf_counter()
    await send(ws, "response.create")
    return await first_audio(ws, started)


async def host_ready(server: GatewayServer) -> None:
    with server.controller.subscribe() as events:
        while server.controller.snapshot().state is not HostState.READY:
            await asyncio.wait_for(events.queue.get(), 600)


async def main(args: argparse.Namespace) -> dict[str, float]:
    scratch = Path(tempfile.mkdtemp(prefix="vo-bench-bridge-"))
    host_file = tiny_config(scratch / "host")
    bridge_file = tiny_config(scratch / "bridge")
    config = load_config(config_file=gateway_config(scratch, host_file, bridge_file), environ={})
    server = GatewayServer(config, Secrets((CLIENT_KEY,), "x"), HOST_KEY)
    bridge = server.bridge
    assert bridge is not None
    started = time.perf_counter()
    await server.start()
    try:
        await asyncio.wait_for(bridge.became_ready.wait(), 600)
        bridge_ready = time.perf_counter() - started
        if server.controller.snapshot().state is not HostState.STOPPED:
            raise SystemExit("the host should be stopped at the start")
        headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=900)) as http,
            http.ws_connect(f"{server.url}/v1/realtime", headers=headers) as ws,
        ):
            opened = time.perf_counter()
            await send(ws, "session.update", session={"turn_detection": None})
            for chunk in spoken_chunks("Hello teacher, can we start the lesson?"):
                await send(ws, "input_audio_buffer.append", audio=chunk)
            await send(ws, "input_audio_buffer.commit")
            await send(ws, "response.create")
            bridge_first = await first_audio(ws, opened)
            on_bridge = await typed_turn(ws, "What is a fraction?")
            await host_ready(server)
            host_ready_s = time.perf_counter() - opened
            # the move happens at the first turn boundary after the host's session is open:
            # READY comes while the host's engines may still load (its session opens once they
            # did), and a warm bridge answers a turn in a second, so turns go on until then
            deadline = time.perf_counter() + MOVE_WAIT_S
            while time.perf_counter() < deadline:
                moved = await typed_turn(ws, "And what is a half of a half?")
                if CHANGES:
                    break
            if len(CHANGES) != 1:
                raise SystemExit(f"expected one session.backend_changed, got {CHANGES}")
            steady = [await typed_turn(ws, f"Tell me more, part {i}.") for i in range(args.turns)]
            rss = bridge.rss_bytes()
    finally:
        await server.stop()
    steady_s = statistics.median(steady)
    return {
        "bridge_ready_s": round(bridge_ready, 2),
        "bridge_first_audio_s": round(bridge_first, 2),
        "host_ready_s": round(host_ready_s, 2),
        "handover_gap_ms": round(float(str(CHANGES[0]["gap_s"])) * 1000, 1),
        "first_host_turn_extra_ms": round((moved - steady_s) * 1000, 1),
        "steady_turn_first_audio_ms": round(steady_s * 1000, 1),
        "bridge_turn_first_audio_ms": round(on_bridge * 1000, 1),
        "bridge_rss_mb": round((rss or 0) / 2**20, 1),
        "turns": args.turns,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    options = parser.parse_args()
    figures = asyncio.run(main(options))
    if options.json:
        print(json.dumps(figures))
    else:
        for name, value in figures.items():
            print(f"{name:30} {value}")
