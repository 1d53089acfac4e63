"""The pre-warm scheduler acting on the learned plan: the learned idle stop is the one the host
is stopped by, a planned span under way holds the host up past its idle stop, keep-on windows
do too, and a planned start fires from APScheduler on the wall clock and starts the host.

The controller's clock is the test's (``Clock``) except in the one test where APScheduler's own
timer must fire; there everything waits on the controller's events, never on a sleep."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.credits.prewarm import SLOT_S
from orchestrator.gateway.controller import HostController
from orchestrator.gateway.lifecycle import HostState
from orchestrator.gateway.plan_routes import current_plan
from orchestrator.gateway.prewarm import PrewarmScheduler
from orchestrator.gateway.store import GatewayStore
from tests.gateway.hosted import START, gateway_config, hosted, reach, seed_visits, wake_in
from tests.gateway.scripted_provider import Clock, ScriptedProbe, ScriptedProvider

DAY, WEEK = 86400.0, 7 * 86400.0
PREWARM = """
[gateway.prewarm]
enabled = true
min_gaps = 10
margin_s = 60
"""


def busy_fridays(gap_s: float) -> list[tuple[float, float]]:
    """Two Fridays before START with six ten-minute sessions each, ``gap_s`` apart: ten gaps."""
    visits = []
    for week in (1, 2):
        first = START - DAY - (week - 1) * WEEK + 3600  # Friday 10:00
        for k in range(6):
            begin = first + k * (600 + gap_s)
            visits.append((begin, begin + 600))
    return visits


async def test_the_learned_idle_stop_is_the_one_the_host_stops_by(tmp_path: Path) -> None:
    config = gateway_config(tmp_path, PREWARM)  # stop_after_s = 600
    seed_visits(tmp_path, busy_fridays(gap_s=900))
    provider, clock = ScriptedProvider(), Clock(START)
    async with hosted(config, provider, clock) as controller:
        scheduler = PrewarmScheduler(controller, config, clock=clock)
        await scheduler.replan()
        seconds, why = controller.idle_stop()
        assert seconds == 900 and "p25 of 10 gaps" in why
        await wake_in(controller, provider, clock, 30)
        clock.advance(700)  # past stop_after_s, not past the learned 900 s
        await controller.settle()
        assert controller.snapshot().state is HostState.READY
        clock.advance(250)
        await controller.settle()
        snapshot = controller.snapshot()
    assert snapshot.state is HostState.DRAINING
    assert "p25 of 10 gaps" in snapshot.cause


async def test_too_little_history_keeps_stop_after_s(tmp_path: Path) -> None:
    config = gateway_config(tmp_path, PREWARM)
    seed_visits(tmp_path, busy_fridays(gap_s=900)[:6])  # five gaps: fewer than min_gaps
    async with hosted(config, ScriptedProvider(), Clock(START)) as controller:
        await PrewarmScheduler(controller, config, clock=Clock(START)).replan()
        seconds, why = controller.idle_stop()
    assert seconds == 600 and "fewer than 10" in why


def saturday_lessons() -> list[tuple[float, float]]:
    """Sessions at 09:00 and 09:15 on the three Saturdays before START (Saturday 09:00)."""
    return [
        (START - week * WEEK + offset, START - week * WEEK + offset + 600)
        for week in (1, 2, 3)
        for offset in (0, SLOT_S)
    ]


async def test_a_gateway_started_inside_a_planned_run_wakes_and_holds_the_host(
    tmp_path: Path,
) -> None:
    config = gateway_config(tmp_path, PREWARM)
    seed_visits(tmp_path, saturday_lessons())
    provider, clock = ScriptedProvider(), Clock(START + 60)  # 09:01, inside the 09:00 run
    async with hosted(config, provider, clock) as controller:
        await PrewarmScheduler(controller, config, clock=clock).replan()
        await reach(controller, HostState.READY)
        held = controller.holding()
        assert held is not None and held[0] == START + SLOT_S  # the run's last slot
        clock.advance(SLOT_S - 120)  # 09:14: idle 780 s, past stop_after_s, still held
        await controller.settle()
        assert controller.snapshot().state is HostState.READY
        clock.advance(180)  # 09:17: the hold is over and the host idle
        await controller.settle()
        final = controller.snapshot().state
        started = [t for t in controller.transitions() if t.target == "starting"]
    assert final is HostState.DRAINING
    assert provider.starts == 1
    assert "prewarm: Sat 09:00-09:30" in started[0].cause


async def test_a_planned_run_already_fired_is_not_fired_again(tmp_path: Path) -> None:
    config = gateway_config(tmp_path, PREWARM)
    seed_visits(tmp_path, saturday_lessons())
    provider, clock = ScriptedProvider(), Clock(START + 60)
    async with hosted(config, provider, clock) as controller:
        scheduler = PrewarmScheduler(controller, config, clock=clock)
        await scheduler.replan()
        await reach(controller, HostState.READY)
        await controller.stop("operator")  # the operator overrules the plan
        await reach(controller, HostState.STOPPED)
        await scheduler.replan()  # the periodic replan, still inside the run
        await controller.settle()
        state = controller.snapshot().state
    assert state is HostState.STOPPED and provider.starts == 1


async def test_a_keep_on_window_holds_the_host_until_its_end(tmp_path: Path) -> None:
    today = datetime.fromtimestamp(START, UTC).date().isoformat()
    window = f"""
[[gateway.prewarm.keep_on]]
from = {today}
to = {today}
start = "08:00"
end = "10:00"
"""
    config = gateway_config(tmp_path, PREWARM + window)
    provider, clock = ScriptedProvider(), Clock(START)  # 09:00
    async with hosted(config, provider, clock) as controller:
        await PrewarmScheduler(controller, config, clock=clock).replan()
        await reach(controller, HostState.READY)
        clock.advance(3500)  # 09:58, idle for most of an hour
        await controller.settle()
        during = controller.snapshot().state
        clock.advance(120)
        await controller.settle()
        after = controller.snapshot().state
        started = next(t for t in controller.transitions() if t.target == "starting")
    assert (during, after) == (HostState.READY, HostState.DRAINING)
    assert "keep_on: keep-on window" in started.cause


async def test_the_plan_shows_what_is_scheduled_held_and_in_force(tmp_path: Path) -> None:
    config = gateway_config(tmp_path, PREWARM)
    seed_visits(tmp_path, saturday_lessons() + busy_fridays(gap_s=900))
    clock = Clock(START - 3600)  # 08:00: the 09:00 run is ahead
    async with hosted(config, ScriptedProvider(), clock) as controller:
        scheduler = PrewarmScheduler(controller, config, clock=clock)
        planned = await scheduler.replan()
        body = await current_plan(controller, config, scheduler, clock())
    assert planned is not None
    acting = body["acting"]
    assert acting["scheduled"]["at"] == planned.at == START - 90 - 60  # boot p95 + margin
    assert acting["scheduled"] == {**body["next_start"]}
    assert acting["holding"] is None
    assert acting["idle_stop_in_force"]["seconds"] == 900


async def test_apscheduler_fires_a_planned_start_on_the_wall_clock(tmp_path: Path) -> None:
    """The one test on real time: a start planned about a second ahead fires by itself."""
    now = time.time()
    slot = (now // SLOT_S + 1) * SLOT_S  # the next slot boundary (UTC)
    eta = 1.0
    if slot - now < eta + 2:
        slot += SLOT_S
    margin = slot - now - eta - 1.0  # the planned start falls about a second from now
    config = gateway_config(
        tmp_path,
        f"default_eta_s = {eta}\n{PREWARM.replace('margin_s = 60', f'margin_s = {margin}')}",
    )
    seed_visits(
        tmp_path,
        [
            (slot - w * WEEK + k * SLOT_S, slot - w * WEEK + k * SLOT_S + 60)
            for w in (1, 2, 3)
            for k in (0, 1)
        ],
    )
    provider = ScriptedProvider()
    store = GatewayStore.in_dir(tmp_path)
    controller = HostController(
        provider, config.gateway, store, host_key="k", probe=ScriptedProbe(provider)
    )
    await controller.start()
    scheduler = PrewarmScheduler(controller, config)
    try:
        await scheduler.start()
        assert controller.snapshot().state is HostState.STOPPED  # not yet
        fires_at = scheduler.status()["scheduled"]["fires_at"]
        assert fires_at == pytest.approx(slot - eta - margin)
        await reach(controller, HostState.READY)
        started = next(t for t in controller.transitions() if t.target == "starting")
    finally:
        await scheduler.close()
        await controller.close()
        store.close()
    assert started.cause.startswith("start asked (prewarm:")
    assert started.at >= fires_at
