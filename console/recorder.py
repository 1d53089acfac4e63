"""The console's one background task: every minute, add what is new to the chart history.

It reads only what the runtime already holds in memory (the GPU sampler's latest reading and
its count, the turn histogram): no NVML call, no engine, and never voice activity. Each new
point goes to the open overview pages over their live streams (``console.live``) and to the
state database (``console.history_store``), from which the next start picks the history up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from console.context import CONSOLE
from console.history import History, Point, histogram_buckets
from console.history_store import HistoryStore
from orchestrator.app.runtime import RUNTIME, Runtime
from services.tasks import TaskSet


def step(runtime: Runtime, history: History) -> Point | None:
    sampler = runtime.gpu_sampler
    buckets = histogram_buckets(runtime.metrics.turn_seconds)
    return history.step(runtime.clock(), sampler.samples, sampler.latest, buckets)


async def restore(runtime: Runtime, history: History, store: HistoryStore) -> None:
    """Put back the points of the last ``keep_s`` that an earlier run saved."""
    kept = await asyncio.to_thread(store.since, runtime.clock() - history.keep_s)
    history.points.extend(kept)


async def _record(runtime: Runtime, history: History, store: HistoryStore | None) -> None:
    if store is not None:  # the hours before a restart, then each new point as it comes
        await restore(runtime, history, store)
    while True:
        point = step(runtime, history)
        if point is not None and store is not None:
            await asyncio.to_thread(store.save, point, keep_s=history.keep_s)
        await asyncio.sleep(history.step_s)


async def recording(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: the history task lives exactly as long as the console app."""
    tasks = TaskSet("console")
    console = app[CONSOLE]
    tasks.spawn("console-history", _record(app[RUNTIME], console.history, console.history_store))
    yield
    await tasks.cancel_all()
