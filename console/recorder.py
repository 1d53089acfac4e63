"""The console's one background task: every minute, add what is new to the chart history.

It reads only what the runtime already holds in memory (the GPU sampler's latest reading and
its count, the turn histogram): no NVML call, no disk, no engine, and never voice activity.
Each new point goes to the open overview pages over their live streams (``console.live``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from console.context import CONSOLE
from console.history import History, histogram_buckets
from orchestrator.runtime import RUNTIME, Runtime
from orchestrator.tasks import TaskSet


def step(runtime: Runtime, history: History) -> None:
    sampler = runtime.gpu_sampler
    buckets = histogram_buckets(runtime.metrics.turn_seconds)
    history.step(runtime.clock(), sampler.samples, sampler.latest, buckets)


async def _record(runtime: Runtime, history: History) -> None:
    while True:
        step(runtime, history)
        await asyncio.sleep(history.step_s)


async def recording(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: the history task lives exactly as long as the console app."""
    tasks = TaskSet("console")
    tasks.spawn("console-history", _record(app[RUNTIME], app[CONSOLE].history))
    yield
    await tasks.cancel_all()
