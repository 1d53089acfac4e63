"""The credit ledger: hand-computed hours, dollars and runways, and what it reads from SQLite."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.config import ConfigError, CostsConfig, load_config
from orchestrator.core.idle import IdleState
from orchestrator.core.store import StateStore, TransitionRecord
from orchestrator.credits.ledger import Ledger
from orchestrator.credits.runway import (
    DAY_S,
    HostRun,
    PowerChange,
    StateChange,
    burn_usd_per_day,
    credit_status,
    day_start,
    format_credits,
    power_changes,
    summarize,
    usage,
)

H = 3600.0
T4 = 0.67
A, W, C, D = IdleState.ACTIVE, IdleState.WARM, IdleState.COLD, IdleState.DORMANT


def test_ten_powered_hours_of_a_t4_cost_six_seventy() -> None:
    used = usage([], [PowerChange(0, True), PowerChange(10 * H, False)], 0, 24 * H)
    assert used.billed_hours == pytest.approx(10)
    assert used.cost_usd(T4) == pytest.approx(6.70)
    assert sum(used.unpowered_s.values()) == pytest.approx(14 * H)


def test_time_splits_by_state_and_power() -> None:
    states = [StateChange(1 * H, W), StateChange(2 * H, C), StateChange(4 * H, D)]
    power = [PowerChange(0, True), PowerChange(4 * H, False)]
    used = usage(states, power, 0, 6 * H, initial_state=A)
    assert used.powered_s[A] == pytest.approx(1 * H)
    assert used.powered_s[W] == pytest.approx(1 * H)
    assert used.powered_s[C] == pytest.approx(2 * H)
    assert used.powered_s[D] == 0
    assert used.unpowered_s[D] == pytest.approx(2 * H)
    assert used.billed_hours == pytest.approx(4)


def test_points_before_the_window_set_its_starting_values() -> None:
    used = usage([StateChange(-5, C)], [PowerChange(-5, True)], 0, H, initial_state=A)
    assert used.powered_s[C] == pytest.approx(H)
    assert used.powered_s[A] == 0


def test_heartbeat_gaps_are_not_billed() -> None:
    """A run that died without saying so ends at its last heartbeat; the next run starts fresh."""
    runs = [HostRun(0, last_seen=1 * H), HostRun(3 * H, last_seen=5 * H, stopped_at=5 * H)]
    power = power_changes(runs, now=10 * H, stale_after_s=150)
    assert usage([], power, 0, 10 * H).billed_hours == pytest.approx(3)


def test_the_running_run_counts_until_now_only_while_its_heartbeat_is_fresh() -> None:
    fresh = power_changes([HostRun(0, last_seen=H - 60)], now=H, stale_after_s=150)
    stale = power_changes([HostRun(0, last_seen=H - 600)], now=H, stale_after_s=150)
    assert usage([], fresh, 0, H).billed_s == pytest.approx(H)
    assert usage([], stale, 0, H).billed_s == pytest.approx(H - 600)


def test_runway_at_the_burn_rate() -> None:
    burn = burn_usd_per_day(spent_usd=14.0, span_s=7 * DAY_S)
    assert burn == pytest.approx(2.0)
    status = credit_status(grant_usd=300, spent_usd=100, burn=burn, now=0, expire_at=None)
    assert status.remaining_usd == pytest.approx(200)
    assert status.runway_days == pytest.approx(100)
    assert status.runs_out_at == pytest.approx(100 * DAY_S)
    assert status.limited_by == "credits"


def test_no_burn_means_no_runway_limit() -> None:
    status = credit_status(grant_usd=300, spent_usd=0, burn=0.0, now=0, expire_at=None)
    assert status.runway_days is None
    assert status.runs_out_at is None
    assert burn_usd_per_day(5.0, 0.0) == 0.0


def test_expiry_limits_the_runway_when_it_comes_first() -> None:
    status = credit_status(grant_usd=300, spent_usd=0, burn=1.0, now=0, expire_at=30 * DAY_S)
    assert status.runway_days == pytest.approx(300)
    assert status.expires_in_days == pytest.approx(30)
    assert status.limited_by == "expiry"
    assert status.runs_out_at == pytest.approx(30 * DAY_S)


def test_overspent_credits_leave_nothing() -> None:
    status = credit_status(grant_usd=10, spent_usd=25, burn=1.0, now=0, expire_at=None)
    assert status.remaining_usd == 0
    assert status.runway_days == 0


def test_summary_counts_from_the_grant_and_burns_over_the_recent_window() -> None:
    start = day_start(date(2026, 3, 1))
    costs = CostsConfig(
        gpu_type="t4", usd_per_hour=1.0, credits_usd=100, credits_start=date(2026, 3, 1)
    )
    # 20 h on day 0; then 7 h a day for the last 7 days (days 3..9).
    spans = [(start, start + 20 * H)]
    spans += [(start + d * DAY_S, start + d * DAY_S + 7 * H) for d in range(3, 10)]
    runs = [HostRun(begin, end, end) for begin, end in spans]
    now = start + 10 * DAY_S
    summary = summarize([], runs, costs, now=now, stale_after_s=150)
    assert summary["billed_hours"] == pytest.approx(69)
    assert summary["cost_usd"] == pytest.approx(69)
    credits = summary["credits"]
    assert credits["remaining_usd"] == pytest.approx(31)
    assert credits["burn_usd_per_day"] == pytest.approx(7)
    assert credits["runway_days"] == pytest.approx(31 / 7, abs=0.01)
    assert credits["start"] == "2026-03-01"
    text = format_credits(summary)
    assert "$31.00 left of $100.00" in text
    assert "$7.00/day" in text
    assert "runway 4.4 days" in text


def test_a_young_history_burns_over_what_it_has_seen() -> None:
    costs = CostsConfig(usd_per_hour=2.0, credits_usd=50)
    runs = [HostRun(0, 12 * H, 12 * H)]
    summary = summarize([], runs, costs, now=DAY_S, stale_after_s=150)
    assert summary["credits"]["burn_usd_per_day"] == pytest.approx(24)
    assert summary["credits"]["burn_measured_days"] == pytest.approx(1)


def _record(at: float, source: IdleState, target: IdleState, host: str = "") -> TransitionRecord:
    actions = [{"action": "host_power_off", "target": host, "ok": True}] if host else []
    return TransitionRecord(at, source, target, "test", actions, {}, {}, 0.0)


def test_ledger_reads_transitions_and_runs_from_the_state_file(tmp_path: Path) -> None:
    path = tmp_path / "orchestrator.db"
    store = StateStore(path)
    costs = CostsConfig(usd_per_hour=T4, credits_usd=300)
    ledger = Ledger(path, costs, heartbeat_s=60)
    ledger.host_on(0)
    for beat in range(60, int(2 * H) + 1, 60):
        ledger.heartbeat(beat)
    store.add_transition(_record(1 * H, A, C))
    dormant = _record(2 * H, C, D, host="command")
    store.add_transition(dormant)
    ledger.note_transition(dormant)
    ledger.close()
    # The host comes back 4 h later: a new process, a new run; it beats for 1 h, then crashes.
    ledger = Ledger(path, costs, heartbeat_s=60)
    ledger.host_on(6 * H)
    store.add_transition(_record(6 * H, D, A))
    for beat in range(int(6 * H) + 60, int(7 * H) + 1, 60):
        ledger.heartbeat(beat)
    summary = ledger.summary(now=10 * H)
    assert summary["billed_hours"] == pytest.approx(3)
    assert summary["cost_usd"] == pytest.approx(2.01)
    by_state = summary["hours_by_state"]
    assert by_state["active"]["powered"] == pytest.approx(2)
    assert by_state["cold"]["powered"] == pytest.approx(1)
    assert by_state["dormant"]["unpowered"] == pytest.approx(4)
    assert by_state["active"]["unpowered"] == pytest.approx(3)  # after the crash
    ledger.close()
    store.close()


def test_a_power_off_by_action_none_is_not_a_power_off(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "db.sqlite", CostsConfig(usd_per_hour=1.0), heartbeat_s=60)
    ledger.host_on(0)
    ledger.note_transition(_record(H, IdleState.COLD, D, host="none"))
    ledger.heartbeat(2 * H - 30)
    assert ledger.summary(now=2 * H)["billed_hours"] == pytest.approx(2)
    ledger.close()


def test_a_heartbeat_after_a_power_off_reopens_the_run(tmp_path: Path) -> None:
    """A process that still beats is on a host that still bills (the power-off did not happen)."""
    ledger = Ledger(tmp_path / "db.sqlite", CostsConfig(usd_per_hour=1.0), heartbeat_s=60)
    ledger.host_on(0)
    ledger.host_off(H)
    ledger.heartbeat(2 * H)
    ledger.heartbeat(3 * H - 30)
    assert ledger.summary(now=3 * H)["billed_hours"] == pytest.approx(2)
    ledger.close()


def test_ledger_without_transitions_uses_the_saved_state(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    store = StateStore(path)
    store.put("ladder", {"state": "cold"})
    ledger = Ledger(path, CostsConfig(), heartbeat_s=60)
    assert ledger.state_changes() == (IdleState.COLD, [])
    ledger.close()
    store.close()


@given(
    st.lists(st.tuples(st.floats(0, 100), st.booleans()), max_size=12),
    st.lists(st.tuples(st.floats(0, 100), st.sampled_from(list(IdleState))), max_size=12),
    st.floats(0, 100),
    st.floats(0, 100),
)
def test_every_second_of_the_window_lands_in_one_bucket(
    power: list[tuple[float, bool]],
    states: list[tuple[float, IdleState]],
    start: float,
    length: float,
) -> None:
    used = usage(
        [StateChange(at, s) for at, s in states],
        [PowerChange(at, on) for at, on in power],
        start,
        start + length,
    )
    total = sum(used.powered_s.values()) + sum(used.unpowered_s.values())
    assert total == pytest.approx(length)
    assert 0 <= used.billed_s <= length + 1e-9


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "user.toml"
    path.write_text(text)
    return path


def test_grant_dates_load_from_toml_dates_and_strings(tmp_path: Path) -> None:
    path = _write(tmp_path, '[costs]\ncredits_start = 2026-03-01\ncredits_expire = "2026-05-30"\n')
    costs = load_config(profile="cpu", config_file=path, environ={}).costs
    assert costs.credits_start == date(2026, 3, 1)
    assert costs.credits_expire == date(2026, 5, 30)
    assert costs.burn_window_days == 7


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[costs]\ncredits_start = "March"\n', "costs.credits_start"),
        (
            "[costs]\ncredits_start = 2026-03-01\ncredits_expire = 2026-02-01\n",
            "credits_expire must come after credits_start",
        ),
        ("[costs]\nburn_window_days = 0\n", "costs.burn_window_days"),
    ],
)
def test_bad_grant_settings_name_their_key(tmp_path: Path, text: str, needle: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=needle) as caught:
        load_config(profile="cpu", config_file=path, environ={})
    assert str(path) in str(caught.value)
