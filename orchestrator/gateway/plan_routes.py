"""``GET /v1/host/plan``: what the learned pre-warm sees and would do now.

The learned week (per weekday x 15-minute slot, the share of recent weeks with a session or a
wake hint starting in it: the console's heat map), the next planned start and why, and the
learned idle stop. Read from the gateway's stored visits, decided by the pure planner
(``orchestrator/credits/prewarm.py``) with the measured boot p95. Whether the gateway acts on
it is ``[gateway.prewarm] enabled``; when it does, ``acting`` shows the start the scheduler
has scheduled, the hold in force and the idle stop the controller applies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from orchestrator.config import AppConfig
from orchestrator.credits.prewarm import (
    Visit,
    learn_week,
    learned_idle_stop,
    next_start,
)
from orchestrator.gateway.controller import HostController
from orchestrator.gateway.prewarm import PrewarmScheduler


def plan(
    visits: list[Visit], now: float, config: AppConfig, *, boot_p95_s: float
) -> dict[str, Any]:
    """The plan as JSON, from the visits before ``now`` (pure)."""
    prewarm, gateway = config.gateway.prewarm, config.gateway
    since = visits[0].start if visits else now
    week = learn_week((v.start for v in visits), now, prewarm, history_since=since)
    upcoming = next_start(now, week, prewarm, boot_p95_s=boot_p95_s)
    idle = learned_idle_stop(visits, now, prewarm, fallback_s=gateway.stop_after_s)
    return {
        "enabled": prewarm.enabled,
        "week": week.to_json(),
        "next_start": upcoming.to_json() if upcoming else None,
        "idle_stop": {"seconds": idle.seconds, "learned": idle.learned, "why": idle.why},
        "boot_p95_s": boot_p95_s,
        "visits": len(visits),
    }


async def current_plan(
    controller: HostController,
    config: AppConfig,
    scheduler: PrewarmScheduler | None,
    now: float,
) -> dict[str, Any]:
    """The plan, and what the scheduler has scheduled and holds now (when pre-warm is on)."""
    rows = await asyncio.to_thread(controller.visits)
    visits = [Visit(start, end, hint) for start, end, hint in rows]
    _p50, p95 = controller.expected_start()
    body = plan(visits, now, config, boot_p95_s=p95)
    body["acting"] = None if scheduler is None else scheduler.status()
    return body


def add_plan_routes(
    app: web.Application,
    controller: HostController,
    config: AppConfig,
    *,
    scheduler: PrewarmScheduler | None = None,
    clock: Callable[[], float] = time.time,
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response(await current_plan(controller, config, scheduler, clock()))

    app.router.add_get("/v1/host/plan", answer)
