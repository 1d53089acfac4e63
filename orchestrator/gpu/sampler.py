"""Read GPU telemetry on an interval in one asyncio task; the idle ladder changes the interval.

The hibernator calls ``set_interval`` on every transition (2 s ACTIVE, 15 s WARM, 60 s COLD by
default): the new interval takes effect at once, with a fresh reading. No threads: NVML answers
in microseconds, so the read runs on the loop. A failing read is logged (once per message) and
sampling goes on; ``stop`` cancels the task and waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from orchestrator.gpu.telemetry import GpuBackend
from services.nvml import GpuTelemetry
from services.tasks import TaskSet

log = logging.getLogger(__name__)

Listener = Callable[[list[GpuTelemetry]], None]


class GpuSampler:
    def __init__(
        self,
        backend: GpuBackend,
        interval_s: float,
        *,
        on_sample: Listener | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        _check(interval_s)
        self._backend = backend
        self._interval_s = interval_s
        self._on_sample = on_sample
        self._sleep = sleep
        self._changed = asyncio.Event()
        self._task: asyncio.Task[Any] | None = None
        self._last_error: str | None = None
        self.latest: list[GpuTelemetry] = []
        self.samples = 0

    @property
    def interval_s(self) -> float:
        return self._interval_s

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def set_interval(self, interval_s: float) -> None:
        """Sample every ``interval_s`` from now on, starting with a reading right away."""
        _check(interval_s)
        if interval_s != self._interval_s:
            self._interval_s = interval_s
            self._changed.set()

    def start(self, tasks: TaskSet | None = None) -> asyncio.Task[Any]:
        if self.running:
            raise RuntimeError("the GPU sampler is already running")
        coro = self._run()
        self._task = tasks.spawn("gpu-sampler", coro) if tasks else asyncio.create_task(coro)
        return self._task

    async def stop(self, grace_s: float = 5.0) -> None:
        task, self._task = self._task, None
        if task is None or task.done():
            return
        task.cancel()
        await asyncio.wait({task}, timeout=grace_s)

    def sample_once(self) -> list[GpuTelemetry]:
        try:
            readings = self._backend.read()
        except Exception as exc:  # a lost GPU or driver: keep the last reading, keep going
            message = f"{type(exc).__name__}: {exc}"
            if message != self._last_error:
                log.warning("GPU telemetry read failed: %s", message)
                self._last_error = message
            return self.latest
        self._last_error = None
        self.latest = readings
        self.samples += 1
        if self._on_sample is not None:
            self._on_sample(readings)
        return readings

    async def _run(self) -> None:
        while True:
            self.sample_once()
            self._changed.clear()
            await self._pause(self._interval_s)

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if the interval changes meanwhile."""
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        changed = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait({sleeper, changed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (sleeper, changed):
                waiter.cancel()
            await asyncio.gather(sleeper, changed, return_exceptions=True)


def _check(interval_s: float) -> None:
    if not interval_s > 0:
        raise ValueError(f"sampling interval must be positive, got {interval_s}")
