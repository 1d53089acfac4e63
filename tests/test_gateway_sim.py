"""The gateway's policies replayed: hand-computed hours and waits, the bridge, the wake hint,
and the no-peeking rule (the learned policy plans a day only from the days before it)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from orchestrator.config.gateway import PrewarmConfig
from orchestrator.credits.gateway_sim import (
    GatewayCosts,
    GatewayPolicy,
    gateway_policies,
    simulate_gateway,
)
from orchestrator.credits.simulator import Session, WakeCosts
from services.base import Role

COSTS = WakeCosts(needs=frozenset({Role.ASR, Role.TTS}), host_boot_s=90.0)  # loads: 3 s longest
NO_HINT = GatewayCosts(hint_lead_s=0.0, drain_s=30.0, usd_per_hour=0.02)
MONDAY = date(2026, 3, 2)


def at(day: date, hh: int, mm: int = 0) -> float:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=UTC).timestamp()


def lesson(day: date, hh: int, mm: int = 0, minutes: float = 30.0) -> Session:
    start = at(day, hh, mm)
    return Session(start, start + minutes * 60)


def test_fixed_idle_stop_by_hand() -> None:
    """Two lessons 1 h apart with a 10-min idle stop: two boots, the host off in between."""
    sessions = [lesson(MONDAY, 15), lesson(MONDAY, 16, 30)]
    result = simulate_gateway(sessions, GatewayPolicy("g", 600.0), COSTS, NO_HINT)
    # on 15:00-15:30 + 10 min + 30 s drain; then 16:30 to the trace's end at 17:00
    assert result.billed_s == 30 * 60 + 630 + 30 * 60
    assert result.waits == (93.0, 93.0)
    body = result.to_dict(0.67)
    assert body["long_waits"] == 2 and body["bridged_sessions"] == 0
    assert body["gateway_usd"] == round(2.0 * 0.02, 2)
    assert body["first_answer_wait_s"] == {"p50": 93.0, "p99": 93.0, "max": 93.0}


def test_a_longer_idle_stop_keeps_the_host_on_across_the_gap() -> None:
    sessions = [lesson(MONDAY, 15), lesson(MONDAY, 16, 30)]
    result = simulate_gateway(sessions, GatewayPolicy("g", 3600.0), COSTS, NO_HINT)
    assert result.billed_s == 2 * 3600
    assert result.waits == (93.0, 0.0)


def test_the_bridge_answers_a_booting_host_early() -> None:
    sessions = [lesson(MONDAY, 15), lesson(MONDAY, 15, 10)]
    result = simulate_gateway(sessions, GatewayPolicy("g", 600.0, bridge=True), COSTS, NO_HINT)
    assert result.waits == (3.0, 0.0)
    assert result.bridged == 1
    assert result.to_dict(0.67)["long_waits"] == 0


def test_the_wake_hint_starts_the_host_earlier() -> None:
    hint = GatewayCosts(hint_lead_s=30.0)
    result = simulate_gateway([lesson(MONDAY, 15)], GatewayPolicy("g", 600.0), COSTS, hint)
    assert result.waits == (63.0,)


def learned() -> GatewayPolicy:
    config = PrewarmConfig(threshold=0.5, min_weeks=1, margin_s=60.0)
    return GatewayPolicy("gateway learned pre-warm", None, config)


def test_learned_policy_prewarms_a_regular_lesson_from_earlier_weeks() -> None:
    sessions = [lesson(MONDAY + timedelta(weeks=k), 17, 5) for k in range(3)]
    result = simulate_gateway(sessions, learned(), COSTS, NO_HINT)
    assert result.waits[0] == 93.0  # nothing known yet
    assert result.waits[1:] == (3.0, 3.0)  # pre-warmed: ready, only the loads


def test_learning_never_peeks_at_the_replayed_day() -> None:
    """One lesson on the first Monday, then Mondays with a lesson at 17:05 only from week 2:
    the week-2 lesson must wait for a boot, because only week 2 itself shows it."""
    sessions = [lesson(MONDAY, 9)] + [
        lesson(MONDAY + timedelta(weeks=k), 17, 5) for k in range(1, 3)
    ]
    result = simulate_gateway(sessions, learned(), COSTS, NO_HINT)
    assert result.waits == (93.0, 93.0, 3.0)


def test_a_holiday_is_not_prewarmed_in_replay() -> None:
    holiday = MONDAY + timedelta(weeks=2)
    sessions = [lesson(MONDAY + timedelta(weeks=k), 17, 5) for k in range(3)]
    config = PrewarmConfig(threshold=0.5, min_weeks=1, holidays=(holiday,))
    policy = GatewayPolicy("g", None, config)
    assert simulate_gateway(sessions, policy, COSTS, NO_HINT).waits == (93.0, 3.0, 93.0)


def test_every_gateway_policy_is_named_and_has_a_bridged_twin() -> None:
    policies = gateway_policies(PrewarmConfig(), (5.0, 30.0))
    names = [p.name for p in policies]
    assert all(name.startswith("gateway") for name in names)
    assert names == [
        "gateway idle 5 min",
        "gateway idle 5 min + bridge",
        "gateway idle 30 min",
        "gateway idle 30 min + bridge",
        "gateway learned pre-warm",
        "gateway learned pre-warm + bridge",
    ]
