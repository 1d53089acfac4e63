"""The gateway's ledger on hand-built transitions: billed stretches, windows, starts, and the
credits with host and gateway burning together. Expected values are worked out by hand here,
never by the functions under test."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from orchestrator.config import CostsConfig
from orchestrator.gateway.ledger import (
    Interval,
    Start,
    billed_intervals,
    billed_s,
    gateway_ledger,
    gateway_s,
    starts,
)
from orchestrator.gateway.store import HostTransition

H, M, DAY = 3600.0, 60.0, 86400.0


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> float:
    """A moment in March 2025, UTC."""
    return datetime(2025, 3, day, hour, minute, second, tzinfo=UTC).timestamp()


def move(when: float, source: str, target: str, power: str = "running") -> HostTransition:
    return HostTransition(when, source, target, "test", "zone-a/gpu-1", power)


def cycle(start: float, ready_after: float, stop: float) -> list[HostTransition]:
    """A whole wake: asked at ``start``, ready after ``ready_after`` s, stopped at ``stop``."""
    return [
        move(start, "stopped", "starting", "stopped"),
        move(start + ready_after / 2, "starting", "booting"),
        move(start + ready_after, "booting", "ready"),
        move(stop - 60, "ready", "draining"),
        move(stop - 30, "draining", "stopping"),
        move(stop, "stopping", "stopped", "stopped"),
    ]


def test_a_whole_wake_bills_from_the_start_asked_to_the_stop() -> None:
    history = cycle(100.0, 60.0, 1060.0)
    assert billed_intervals(history) == [Interval(100.0, 1060.0)]
    assert billed_s(history, 0.0, 5000.0, now=5000.0) == 960.0


def test_an_open_stretch_counts_up_to_now_and_no_further() -> None:
    history = cycle(100.0, 60.0, 1060.0)[:3]  # ready, never stopped
    assert billed_intervals(history) == [Interval(100.0, None)]
    assert billed_s(history, 0.0, 10_000.0, now=400.0) == 300.0
    assert billed_s(history, 0.0, 250.0, now=400.0) == 150.0  # the window ends first
    assert billed_s(history, 500.0, 900.0, now=400.0) == 0.0  # a window after now


def test_a_window_cuts_a_stretch_on_both_sides() -> None:
    history = cycle(100.0, 60.0, 1060.0) + cycle(2000.0, 60.0, 2500.0)
    assert billed_s(history, 500.0, 800.0, now=9000.0) == 300.0
    assert billed_s(history, 1000.0, 2100.0, now=9000.0) == 60.0 + 100.0
    assert billed_s(history, 0.0, 50.0, now=9000.0) == 0.0
    assert billed_s(history, 0.0, 9000.0, now=9000.0) == 960.0 + 500.0


def test_a_start_refused_with_the_machine_stopped_bills_only_until_the_refusal() -> None:
    history = [
        move(100.0, "stopped", "starting", "stopped"),
        move(110.0, "starting", "failed", "stopped"),  # ZONE_RESOURCE_POOL_EXHAUSTED
        move(700.0, "failed", "starting", "stopped"),  # the retry after the backoff
        move(740.0, "starting", "booting"),
        move(760.0, "booting", "ready"),
    ]
    assert billed_intervals(history) == [Interval(100.0, 110.0), Interval(700.0, None)]
    assert billed_s(history, 0.0, 1000.0, now=1000.0) == 10.0 + 300.0


def test_a_failed_start_whose_machine_is_stopping_ends_the_stretch_too() -> None:
    history = [
        move(100.0, "stopped", "starting", "stopped"),
        move(160.0, "starting", "failed", "stopping"),  # the host stopped while starting
    ]
    assert billed_intervals(history) == [Interval(100.0, 160.0)]


@pytest.mark.parametrize("power", ["running", "starting", "unknown"])
def test_a_failure_with_the_machine_up_or_unseen_keeps_billing(power: str) -> None:
    history = [
        move(100.0, "stopped", "starting", "stopped"),
        move(130.0, "starting", "booting"),
        move(1000.0, "booting", "failed", power),  # the provider says it still runs
        move(4000.0, "failed", "stopped", "stopped"),
    ]
    assert billed_intervals(history) == [Interval(100.0, 4000.0)]


def test_a_host_adopted_running_bills_from_the_adoption() -> None:
    history = [
        move(100.0, "stopped", "stopped", "stopped"),  # the gateway's first start: host off
        move(500.0, "stopped", "ready"),  # started by hand, seen when the gateway restarted
        move(900.0, "ready", "stopping"),
        move(930.0, "stopping", "stopped", "stopped"),
    ]
    assert billed_intervals(history) == [Interval(500.0, 930.0)]


def test_a_gateway_restart_during_a_boot_keeps_one_stretch_and_one_start() -> None:
    history = [
        move(100.0, "stopped", "starting", "stopped"),
        move(130.0, "starting", "booting"),
        move(300.0, "stopped", "booting"),  # the new gateway adopts the booting host
        move(320.0, "booting", "ready"),
        move(900.0, "ready", "stopping"),
        move(920.0, "stopping", "stopped", "stopped"),
    ]
    assert billed_intervals(history) == [Interval(100.0, 920.0)]
    assert starts(history) == [Start(100.0, "ready", 220.0)]


def test_starts_are_followed_to_their_end() -> None:
    history = [
        *cycle(100.0, 40.0, 500.0),
        move(600.0, "stopped", "starting", "stopped"),
        move(610.0, "starting", "failed", "stopped"),
        move(700.0, "failed", "starting", "stopped"),
        move(720.0, "starting", "stopped", "stopped"),  # preempted while starting
        move(800.0, "stopped", "starting", "stopped"),
    ]
    assert starts(history) == [
        Start(100.0, "ready", 40.0),
        Start(600.0, "failed"),
        Start(700.0, "stopped"),
        Start(800.0, "pending"),
    ]


def test_the_gateway_bills_always_from_its_start() -> None:
    assert gateway_s(None, 0.0, 1000.0, now=1000.0) == 0.0
    assert gateway_s(100.0, 0.0, 1000.0, now=500.0) == 400.0
    assert gateway_s(100.0, 200.0, 300.0, now=500.0) == 100.0


# -- the summary ------------------------------------------------------------------------------

COSTS = CostsConfig(
    gpu_type="l4-24gb",
    usd_per_hour=2.0,
    credits_usd=100.0,
    credits_start=date(2025, 3, 1),
    credits_expire=date(2025, 6, 1),
    burn_window_days=7,
)
NOW = at(15, 12)


def two_days() -> list[HostTransition]:
    """13 Mar: the gateway starts, host off. 14 Mar: a wake of 2 h 1 min, ready after 120 s,
    and one at 23:00 that runs past midnight (ready after 90 s). 15 Mar: a start refused for
    capacity, then one ready after 150 s, still running at noon."""
    return [
        move(at(13, 0), "stopped", "stopped", "stopped"),
        *cycle(at(14, 10), 120.0, at(14, 12, 1)),
        *cycle(at(14, 23), 90.0, at(15, 1, 1)),
        move(at(15, 11), "stopped", "starting", "stopped"),
        move(at(15, 11, 0, 10), "starting", "failed", "stopped"),
        move(at(15, 11, 30), "failed", "starting", "stopped"),
        move(at(15, 11, 31), "starting", "booting"),
        move(at(15, 11, 32, 30), "booting", "ready"),
    ]


def test_the_summary_bills_today_the_month_and_each_day() -> None:
    ledger = gateway_ledger(two_days(), COSTS, 0.5, now=NOW, days=3)
    host_14 = (2 * H + M) + 1 * H  # the 10:00 wake, and 23:00 to midnight
    host_15 = (1 * H + M) + 10.0 + 30 * M  # past midnight, the refused start, the open one
    assert ledger.today.host_hours == pytest.approx(host_15 / H)
    assert ledger.today.host_usd == pytest.approx(2.0 * host_15 / H)
    assert ledger.today.gateway_hours == pytest.approx(12.0)
    assert ledger.today.total_usd == pytest.approx(2.0 * host_15 / H + 0.5 * 12)
    assert (ledger.today.starts, ledger.today.failed_starts) == (2, 1)

    assert [day.since for day in ledger.days] == [at(13, 0), at(14, 0), at(15, 0)]
    assert [day.host_hours for day in ledger.days] == pytest.approx([0.0, host_14 / H, host_15 / H])
    assert [day.gateway_hours for day in ledger.days] == pytest.approx([24.0, 24.0, 12.0])
    assert [day.starts for day in ledger.days] == [0, 2, 2]
    assert ledger.days[-1] == ledger.today

    month_host = (host_14 + host_15) / H
    assert ledger.month.since == at(1, 0)
    assert ledger.month.host_hours == pytest.approx(month_host)
    assert ledger.month.gateway_hours == pytest.approx(60.0)  # since 13 Mar, 00:00
    assert ledger.month.total_usd == pytest.approx(2.0 * month_host + 0.5 * 60)
    assert (ledger.month.starts, ledger.month.failed_starts) == (4, 1)


def test_the_summary_measures_start_to_ready() -> None:
    ledger = gateway_ledger(two_days(), COSTS, 0.5, now=NOW, days=3)
    assert ledger.measured_starts == 3  # 120, 90, 150 s; the refused start has no duration
    assert ledger.start_p50_s == 120.0
    assert ledger.start_p95_s == pytest.approx(120.0 + 0.9 * 30.0)  # 95 % of the way to 150
    only_today = gateway_ledger(two_days(), COSTS, 0.5, now=NOW, days=1)
    assert (only_today.measured_starts, only_today.start_p50_s) == (1, 150.0)


def test_the_credits_run_on_the_combined_burn() -> None:
    ledger = gateway_ledger(two_days(), COSTS, 0.5, now=NOW, days=3)
    spent = 2.0 * ((3 * H + M) + (1 * H + M + 10.0 + 30 * M)) / H + 0.5 * 60
    credits = ledger.credits
    assert ledger.credits_since == at(1, 0)
    assert credits.spent_usd == pytest.approx(spent)
    assert credits.remaining_usd == pytest.approx(100.0 - spent)
    # The burn is measured over the history there is (2.5 days), not the 7-day window.
    assert ledger.burn_since == at(13, 0)
    assert credits.burn_usd_per_day == pytest.approx(spent / 2.5)
    assert credits.runway_days == pytest.approx((100.0 - spent) / (spent / 2.5))
    assert credits.expires_in_days == pytest.approx(77.5)  # to 1 June, 00:00
    assert credits.limited_by == "credits"
    body = ledger.to_json()
    assert body["credits"]["remaining_usd"] == round(100.0 - spent, 2)
    assert body["credits"]["start"] == "2025-03-01"
    assert [day["day"] for day in body["days"]] == ["2025-03-13", "2025-03-14", "2025-03-15"]


def test_a_configured_gateway_start_bills_the_vm_from_then() -> None:
    since = datetime(2025, 3, 1, tzinfo=UTC).timestamp()
    ledger = gateway_ledger(two_days(), COSTS, 0.5, now=NOW, gateway_since=since)
    assert ledger.month.gateway_hours == pytest.approx(14.5 * 24)
    assert ledger.burn_since == pytest.approx(NOW - 7 * DAY)  # now the full window is history


def test_without_history_nothing_is_spent_and_nothing_burns() -> None:
    ledger = gateway_ledger([], COSTS, 0.5, now=NOW, days=7)
    assert ledger.month.total_usd == 0.0 and len(ledger.days) == 7
    assert ledger.credits.spent_usd == 0.0
    assert ledger.credits.runway_days is None
    assert ledger.credits.limited_by == "expiry"
    assert (ledger.start_p50_s, ledger.start_p95_s) == (None, None)
