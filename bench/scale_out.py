"""Scale-out on Ray Serve: sessions served and time to first audio with one and two replicas,
and the time from zero replicas to the first answer.

    python bench/scale_out.py [--sessions 4] [--json]

A local Ray cluster on this machine's CPU runs the tiny test engines (noise models, built
offline), as ``tests/scale`` does. For one, then two replicas, ``--sessions`` Realtime sessions
start at once; each types one turn (``conversation.item.create`` + ``response.create``) and
times ``response.create`` -> the first ``response.audio.delta``. Then the deployment scales to
zero and one session is opened: the seconds until its ``session.created`` (a replica started,
its engines loaded) are ``zero_to_first_answer_s``. On a CPU the replicas share the same cores,
so two replicas cannot be faster than the cores allow: the figures show the plumbing works and
what it costs, not a GPU cluster's speed.
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
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
from harness import KEY, tiny_config

from tests.conftest import free_port
from tests.scale.cluster import LocalCluster, scale_toml, until


async def one_session(http: aiohttp.ClientSession, url: str) -> float | None:
    """Seconds from ``response.create`` to the first audio; None when the session failed."""
    async with http.ws_connect(
        f"{url}/v1/realtime", headers={"Authorization": f"Bearer {KEY}"}
    ) as ws:
        await _until(ws, "session.created")
        item = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Hi"}],
        }
        await ws.send_str(json.dumps({"type": "conversation.item.create", "item": item}))
        await _until(ws, "conversation.item.created")
        asked = time.perf_counter()
        await ws.send_str(json.dumps({"type": "response.create"}))
        if await _until(ws, "response.audio.delta") is None:
            return None
        first = time.perf_counter() - asked
        await _until(ws, "response.done")
        return first


async def _until(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any] | None:
    async with asyncio.timeout(600):
        async for message in ws:
            event: dict[str, Any] = json.loads(message.data)
            if event["type"] == kind:
                return event
            if event["type"] == "error":
                return None
    return None


async def round_of(cluster: LocalCluster, replicas: int, sessions: int) -> dict[str, Any]:
    await asyncio.to_thread(cluster.deploy, num_replicas=replicas, max_queued_requests=-1)
    async with aiohttp.ClientSession() as http:
        await one_session(http, cluster.url)  # every replica's engines loaded before timing
        if replicas > 1:
            await asyncio.gather(*(one_session(http, cluster.url) for _ in range(replicas)))
        started = time.perf_counter()
        found = await asyncio.gather(*(one_session(http, cluster.url) for _ in range(sessions)))
        wall = time.perf_counter() - started
    served = [t for t in found if t is not None]
    return {
        "replicas": replicas,
        "sessions": sessions,
        "served": len(served),
        "p50_first_audio_s": round(statistics.median(served), 3) if served else None,
        "wall_s": round(wall, 3),
    }


async def from_zero(cluster: LocalCluster) -> float:
    autoscaling = {
        "min_replicas": 0,
        "initial_replicas": 0,
        "max_replicas": 1,
        "upscale_delay_s": 0,
        "downscale_delay_s": 600,
    }
    await asyncio.to_thread(cluster.deploy, autoscaling_config=autoscaling, max_queued_requests=-1)
    await until(lambda: not cluster.replicas(), what="zero replicas")
    async with aiohttp.ClientSession() as http:
        started = time.perf_counter()
        async with http.ws_connect(
            f"{cluster.url}/v1/realtime", headers={"Authorization": f"Bearer {KEY}"}
        ) as ws:
            await _until(ws, "session.created")
            return round(time.perf_counter() - started, 3)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        extra = scale_toml(free_port(), sessions_per_replica=args.sessions)
        config_file = tiny_config(Path(scratch), extra)
        with LocalCluster(config_file, KEY).running() as cluster:
            rounds = [await round_of(cluster, n, args.sessions) for n in (1, 2)]
            zero = await from_zero(cluster)
    return {"rounds": rounds, "zero_to_first_answer_s": zero}


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=4, help="sessions at once per round")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    result = asyncio.run(main(args))
    if args.json:
        print(json.dumps(result))
        return
    for found in result["rounds"]:
        print(
            f"{found['replicas']} replica(s): {found['served']}/{found['sessions']} served,"
            f" p50 first audio {found['p50_first_audio_s']} s, all in {found['wall_s']} s"
        )
    print(f"zero replicas -> first answer: {result['zero_to_first_answer_s']} s")


if __name__ == "__main__":
    run()
