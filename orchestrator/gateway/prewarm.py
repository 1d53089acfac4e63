"""Acting on the learned plan: planned starts fired by APScheduler, holds, the learned idle stop.

The planner (``orchestrator/credits/prewarm.py``) is pure; this is the part with a clock. On
start and every ``replan_s`` it reads the stored visits, hands the learned idle stop to the
controller, and schedules one job at the next planned start (replacing the last one: the plan
moves as history grows). When the job fires, the controller is told to hold the host up until
the planned run or keep-on window ends, then to wake. A gateway that starts inside a planned
span acts on it at once. Nothing here changes the host's state: the controller's writer does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from orchestrator.config import AppConfig
from orchestrator.credits.prewarm import (
    PlannedStart,
    Visit,
    due_now,
    learn_week,
    learned_idle_stop,
    next_start,
    zone,
)
from orchestrator.gateway.controller import HostController

log = logging.getLogger(__name__)

JOB = "prewarm-start"


class PrewarmScheduler:
    """Fires the planned starts of ``[gateway.prewarm]`` and keeps the idle stop learned."""

    def __init__(
        self,
        controller: HostController,
        config: AppConfig,
        *,
        clock: Callable[[], float] = time.time,
        replan_s: float = 900.0,
    ) -> None:
        self._controller = controller
        self._config = config
        self._clock = clock
        self._replan_s = replan_s
        self._scheduler = AsyncIOScheduler(timezone=zone(config.gateway.prewarm))
        self._planned: PlannedStart | None = None
        self._fired: tuple[str, float] | None = None  # the span last acted on
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._scheduler.start()
        self._scheduler.add_job(
            self.replan,
            IntervalTrigger(seconds=self._replan_s),
            id="prewarm-replan",
            coalesce=True,
            max_instances=1,
        )
        await self.replan()

    async def close(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    async def replan(self) -> PlannedStart | None:
        """Learn from the visits so far; act on a span under way; schedule the next start."""
        async with self._lock:
            rows = await asyncio.to_thread(self._controller.visits)
            visits = [Visit(start, end, hint) for start, end, hint in rows]
            now = self._clock()
            prewarm = self._config.gateway.prewarm
            _p50, p95 = self._controller.expected_start()
            since = min((v.start for v in visits), default=now)
            week = learn_week((v.start for v in visits), now, prewarm, history_since=since)
            idle = learned_idle_stop(
                visits, now, prewarm, fallback_s=self._config.gateway.stop_after_s
            )
            self._controller.set_idle_stop(idle.seconds, idle.why)
            current = due_now(now, week, prewarm, boot_p95_s=p95)
            if current is not None and _span(current) != self._fired:
                await self._act(current)
            self._planned = next_start(now, week, prewarm, boot_p95_s=p95)
            self._schedule(self._planned)
            return self._planned

    def _schedule(self, planned: PlannedStart | None) -> None:
        if planned is None:
            if self._scheduler.get_job(JOB) is not None:
                self._scheduler.remove_job(JOB)
            return
        tz = zone(self._config.gateway.prewarm)
        self._scheduler.add_job(
            self._fire,
            DateTrigger(run_date=datetime.fromtimestamp(planned.at, tz)),
            args=[planned],
            id=JOB,
            replace_existing=True,
            # Late (a busy loop, a suspended VM) but still inside its span: fire anyway.
            misfire_grace_time=max(1, int(planned.until - planned.at)),
        )
        log.info(
            "next planned start at %s: %s", datetime.fromtimestamp(planned.at, tz), planned.why
        )

    async def _fire(self, planned: PlannedStart) -> None:
        async with self._lock:
            await self._act(planned)
        await self.replan()

    async def _act(self, planned: PlannedStart) -> None:
        self._fired = _span(planned)
        self._controller.hold(planned.until, planned.why)
        await self._controller.wake(f"{planned.kind}: {planned.why}")

    def status(self) -> dict[str, Any]:
        """What is scheduled and held now (the plan page and ``GET /v1/host/plan``)."""
        holding = self._controller.holding()
        seconds, why = self._controller.idle_stop()
        scheduled = None if self._planned is None else self._planned.to_json()
        job = self._scheduler.get_job(JOB) if self._scheduler.running else None
        if scheduled is not None and job is not None and job.next_run_time is not None:
            scheduled["fires_at"] = job.next_run_time.timestamp()
        return {
            "scheduled": scheduled,
            "holding": None if holding is None else {"until": holding[0], "why": holding[1]},
            "idle_stop_in_force": {"seconds": seconds, "why": why},
        }


def _span(planned: PlannedStart) -> tuple[str, float]:
    """What identifies a planned span across replans (its start moves with the boot p95)."""
    return planned.kind, planned.until
