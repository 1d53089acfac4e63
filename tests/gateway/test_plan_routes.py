"""``GET /v1/host/plan`` and what feeds it: sessions and the app's wake hints are recorded by
the controller, and the learned week, next start and idle stop are the planner's."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from orchestrator.credits.prewarm import Visit
from orchestrator.gateway.plan_routes import add_plan_routes, plan
from tests.gateway.hosted import START, gateway_config, hosted
from tests.gateway.scripted_provider import Clock, ScriptedProvider

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]
WEEK = 7 * 86400.0


async def recorded(controller: Any, count: int) -> list[tuple[float, float, bool]]:
    """The visits once ``count`` are stored (the controller writes them in a thread)."""
    async with asyncio.timeout(10):
        while len(rows := await asyncio.to_thread(controller.visits)) < count:
            await asyncio.sleep(0.01)  # a bounded wait on the condition, not on a race
    return rows


async def test_sessions_and_app_wakes_are_recorded_and_requests_are_not(
    tmp_path: Path, aiohttp_client: MakeClient
) -> None:
    config, provider, clock = gateway_config(tmp_path), ScriptedProvider(), Clock(START)
    async with hosted(config, provider, clock) as controller:
        with controller.use("request"):
            clock.advance(5)
        with controller.use("session"):
            clock.advance(600)
        await controller.wake("app")
        await controller.wake("operator")  # the operator's button is not a student coming
        rows = await recorded(controller, 2)
        app = web.Application()
        add_plan_routes(app, controller, config, clock=clock)
        client = await aiohttp_client(app)
        body = await (await client.get("/v1/host/plan")).json()
    assert rows == [(START + 5, START + 605, False), (START + 605, START + 605, True)]
    assert body["visits"] == 2
    assert body["next_start"] is None  # one week of history is not enough to plan
    assert body["idle_stop"]["learned"] is False


def test_a_weekly_lesson_is_planned_before_its_slot_with_why(tmp_path: Path) -> None:
    config = gateway_config(tmp_path)
    tuesday_5pm = datetime(2025, 3, 4, 17, 0, tzinfo=UTC).timestamp()
    visits = [Visit(tuesday_5pm + k * WEEK, tuesday_5pm + k * WEEK + 1800) for k in range(4)]
    now = tuesday_5pm + 3 * WEEK + 86400  # the Wednesday after the fourth lesson
    body = plan(visits, now, config, boot_p95_s=120.0)
    slot = 17 * 4  # 17:00 in 15-minute slots
    assert body["week"]["share"][1][slot] == 1.0
    upcoming = body["next_start"]
    next_lesson = tuesday_5pm + 4 * WEEK
    margin = config.gateway.prewarm.margin_s
    assert upcoming["at"] == next_lesson - 120.0 - margin
    assert "Tue" in upcoming["why"] or "17:00" in upcoming["why"]
