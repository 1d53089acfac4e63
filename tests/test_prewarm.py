"""The pre-warm planner on synthetic histories: regular, irregular, holidays, keep-on windows,
and the learned idle stop with its clamp and fallback. No clock but the ``now`` passed in."""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from orchestrator.config.gateway import KeepOnWindow, PrewarmConfig
from orchestrator.credits.prewarm import (
    SLOT_S,
    Visit,
    due_now,
    keep_on_until,
    learn_week,
    learned_idle_stop,
    next_start,
    plan_day,
)

TUESDAY = date(2026, 3, 3)  # the first of four Tuesdays in the history
BOOT_P95 = 120.0


def at(day: date, hh: int, mm: int = 0) -> float:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=UTC).timestamp()


def config(**changes: Any) -> PrewarmConfig:
    return PrewarmConfig(enabled=True, **changes)


def tuesdays(count: int, hh: int = 17, mm: int = 5) -> list[float]:
    return [at(TUESDAY + timedelta(weeks=k), hh, mm) for k in range(count)]


HISTORY_SINCE = at(TUESDAY - timedelta(days=1), 0)
NEXT_TUESDAY = TUESDAY + timedelta(weeks=4)
NOW = at(NEXT_TUESDAY, 0)  # midnight before the fifth Tuesday


def test_the_calendar_is_what_the_tests_assume() -> None:
    assert TUESDAY.weekday() == 1


def test_regular_tuesday_five_pm_is_prewarmed_before_it() -> None:
    cfg = config(margin_s=60.0)
    week = learn_week(tuesdays(4), NOW, cfg, history_since=HISTORY_SINCE)
    assert week.share(1, 17 * 4) == 1.0
    assert week.seen[1][17 * 4] == 4
    planned = plan_day(NEXT_TUESDAY, week, cfg, boot_p95_s=BOOT_P95)
    assert len(planned) == 1
    assert planned[0].at == at(NEXT_TUESDAY, 17) - BOOT_P95 - 60.0
    assert planned[0].until == at(NEXT_TUESDAY, 17)
    assert "4 of the last 4 weeks" in planned[0].why and "Tue 17:00-17:15" in planned[0].why
    # no other day of the week is pre-warmed
    assert plan_day(NEXT_TUESDAY + timedelta(days=1), week, cfg, boot_p95_s=BOOT_P95) == []
    found = next_start(NOW, week, cfg, boot_p95_s=BOOT_P95)
    assert found == planned[0]


def test_consecutive_slots_make_one_start() -> None:
    cfg = config()
    starts = tuesdays(4, 17, 5) + tuesdays(4, 17, 20)
    week = learn_week(starts, NOW, cfg, history_since=HISTORY_SINCE)
    planned = plan_day(NEXT_TUESDAY, week, cfg, boot_p95_s=BOOT_P95)
    assert [(p.at, p.until) for p in planned] == [
        (at(NEXT_TUESDAY, 17) - BOOT_P95 - cfg.margin_s, at(NEXT_TUESDAY, 17, 15))
    ]


def test_irregular_below_the_threshold_is_not_prewarmed() -> None:
    cfg = config(threshold=0.75)
    week = learn_week(tuesdays(4)[:2], NOW, cfg, history_since=HISTORY_SINCE)  # 2 of 4 weeks
    assert week.share(1, 17 * 4) == 0.5
    assert plan_day(NEXT_TUESDAY, week, cfg, boot_p95_s=BOOT_P95) == []
    lower = config(threshold=0.5)
    assert len(plan_day(NEXT_TUESDAY, week, lower, boot_p95_s=BOOT_P95)) == 1


def test_too_little_history_plans_nothing() -> None:
    cfg = config(min_weeks=2)
    since = at(TUESDAY + timedelta(weeks=3), 0)  # the gateway has known one Tuesday only
    week = learn_week(tuesdays(4), NOW, cfg, history_since=since)
    assert week.seen[1][17 * 4] == 1 and week.share(1, 17 * 4) == 1.0
    assert plan_day(NEXT_TUESDAY, week, cfg, boot_p95_s=BOOT_P95) == []


def test_starts_older_than_the_window_are_forgotten() -> None:
    cfg = config(weeks=2, min_weeks=2, threshold=0.5)
    week = learn_week(tuesdays(2), NOW, cfg, history_since=HISTORY_SINCE)  # weeks 1-2 of 4
    assert week.seen[1][17 * 4] == 2 and week.hits[1][17 * 4] == 0


def test_holidays_are_never_prewarmed_and_do_not_count_as_empty_weeks() -> None:
    holiday = TUESDAY + timedelta(weeks=2)
    starts = [s for s in tuesdays(4) if datetime.fromtimestamp(s, UTC).date() != holiday]
    cfg = config(holidays=(holiday, NEXT_TUESDAY))
    week = learn_week(starts, NOW, cfg, history_since=HISTORY_SINCE)
    assert (week.hits[1][17 * 4], week.seen[1][17 * 4]) == (3, 3)  # the holiday week is left out
    assert plan_day(NEXT_TUESDAY, week, cfg, boot_p95_s=BOOT_P95) == []
    assert plan_day(NEXT_TUESDAY + timedelta(weeks=1), week, cfg, boot_p95_s=BOOT_P95) != []


def test_wake_hints_count_like_session_starts() -> None:
    cfg = config()
    hints = [Visit(s, s, hint=True) for s in tuesdays(4)]
    week = learn_week([v.start for v in hints], NOW, cfg, history_since=HISTORY_SINCE)
    assert len(plan_day(NEXT_TUESDAY, week, cfg, boot_p95_s=BOOT_P95)) == 1


def exam_week(**changes: Any) -> KeepOnWindow:
    fields: dict[str, Any] = {
        "from": NEXT_TUESDAY,
        "to": NEXT_TUESDAY + timedelta(days=4),
        "start": "08:00",
        "end": "20:00",
    }
    return KeepOnWindow.model_validate(fields | changes)


def test_keep_on_window_starts_before_and_holds_until_its_end() -> None:
    cfg = config(keep_on=(exam_week(weekdays=(1, 2)),))
    week = learn_week(tuesdays(4), NOW, cfg, history_since=HISTORY_SINCE)
    planned = plan_day(NEXT_TUESDAY, week, cfg, boot_p95_s=BOOT_P95)
    # the regular 17:00 slot lies inside the window: one start, the window's
    assert [(p.kind, p.at, p.until) for p in planned] == [
        ("keep_on", at(NEXT_TUESDAY, 8) - BOOT_P95 - cfg.margin_s, at(NEXT_TUESDAY, 20))
    ]
    assert "keep-on window" in planned[0].why
    thursday = NEXT_TUESDAY + timedelta(days=2)  # inside the dates, not a listed weekday
    assert plan_day(thursday, week, cfg, boot_p95_s=BOOT_P95) == []
    assert keep_on_until(at(NEXT_TUESDAY, 12), cfg) == at(NEXT_TUESDAY, 20)
    assert keep_on_until(at(NEXT_TUESDAY, 21), cfg) is None
    assert keep_on_until(at(thursday, 12), cfg) is None


def test_bad_windows_and_ranges_name_the_problem() -> None:
    with pytest.raises(ValidationError, match="end 07:00 is not after start 08:00"):
        exam_week(end="07:00")
    with pytest.raises(ValidationError, match="not a time of day"):
        exam_week(start="8 am")
    with pytest.raises(ValidationError, match="idle_max_s"):
        config(idle_min_s=600.0, idle_max_s=300.0)
    with pytest.raises(ValidationError, match="time zone"):
        config(timezone="Mars/Olympus")


def day_of_lessons(day: date, gaps_min: list[float]) -> list[Visit]:
    """Half-hour lessons from 15:00 with the given gaps between them."""
    visits, start = [], at(day, 15)
    for gap in [0.0, *gaps_min]:
        start += gap * 60
        visits.append(Visit(start, start + 1800))
        start += 1800
    return visits


def test_learned_idle_stop_is_a_percentile_of_gaps_within_a_day() -> None:
    cfg = config(min_gaps=4, idle_percentile=75.0, idle_min_s=60.0, idle_max_s=3600.0)
    visits = day_of_lessons(TUESDAY, [5, 10, 20, 40])
    visits += [Visit(at(TUESDAY + timedelta(days=1), 9), at(TUESDAY + timedelta(days=1), 9, 30))]
    stop = learned_idle_stop(visits, NOW, cfg, fallback_s=600.0)
    assert stop.learned and stop.seconds == 20 * 60  # the overnight gap is not a gap
    assert "p75 of 4 gaps" in stop.why


def test_learned_idle_stop_is_clamped() -> None:
    visits = day_of_lessons(TUESDAY, [1, 2, 2, 3]) + day_of_lessons(TUESDAY + timedelta(1), [90])
    low = config(min_gaps=4, idle_min_s=300.0, idle_max_s=900.0, idle_percentile=50.0)
    assert learned_idle_stop(visits, NOW, low, fallback_s=600.0).seconds == 300.0
    high = config(min_gaps=4, idle_min_s=300.0, idle_max_s=900.0, idle_percentile=100.0)
    assert learned_idle_stop(visits, NOW, high, fallback_s=600.0).seconds == 900.0


def test_learned_idle_stop_falls_back_with_little_history() -> None:
    cfg = config(min_gaps=20)
    visits = day_of_lessons(TUESDAY, [5, 10])
    hints = [Visit(at(TUESDAY, 15) + k, at(TUESDAY, 15) + k, hint=True) for k in range(40)]
    stop = learned_idle_stop(visits + hints, NOW, cfg, fallback_s=600.0)
    assert (stop.seconds, stop.learned) == (600.0, False)
    assert "2 gaps known" in stop.why


def test_a_session_still_running_at_now_teaches_nothing() -> None:
    cfg = config(min_gaps=1)
    visits = [Visit(NOW - 7200, NOW - 5400), Visit(NOW - 1800, NOW + 600)]
    assert not learned_idle_stop(visits, NOW, cfg, fallback_s=600.0).learned


def test_the_week_heat_map_has_a_row_per_day() -> None:
    cfg = config()
    week = learn_week(tuesdays(4), NOW, cfg, history_since=HISTORY_SINCE)
    body = week.to_json()
    assert body["slot_s"] == SLOT_S and len(body["share"]) == 7
    assert body["share"][1][68] == 1.0 and sum(map(sum, body["share"])) == 1.0


def test_the_toml_form_of_a_keep_on_window_loads() -> None:
    text = """
    holidays = [2026-04-03]
    [[keep_on]]
    from = 2026-06-08
    to = 2026-06-19
    weekdays = [0, 4]
    start = "14:00"
    end = "21:00"
    """
    cfg = PrewarmConfig.model_validate(tomllib.loads(text))
    assert cfg.holidays == (date(2026, 4, 3),)
    assert cfg.keep_on[0].from_date == date(2026, 6, 8) and cfg.keep_on[0].weekdays == (0, 4)


def test_due_now_is_the_span_under_way_and_none_outside_it() -> None:
    cfg = config()
    starts = tuesdays(4, 17, 5) + tuesdays(4, 17, 20)  # a run 17:00-17:30, held until 17:15
    week = learn_week(starts, NOW, cfg, history_since=HISTORY_SINCE)
    planned = plan_day(NEXT_TUESDAY, week, cfg, boot_p95_s=BOOT_P95)[0]
    assert due_now(planned.at - 1, week, cfg, boot_p95_s=BOOT_P95) is None
    assert due_now(planned.at, week, cfg, boot_p95_s=BOOT_P95) == planned
    assert due_now(at(NEXT_TUESDAY, 17, 10), week, cfg, boot_p95_s=BOOT_P95) == planned
    assert due_now(planned.until, week, cfg, boot_p95_s=BOOT_P95) is None


def test_due_now_finds_a_midnight_run_started_the_evening_before() -> None:
    cfg = config(margin_s=600.0)
    wednesdays = [at(TUESDAY + timedelta(days=1, weeks=k), 0, 5) for k in range(4)]
    starts = wednesdays + [w + SLOT_S for w in wednesdays]  # 00:00-00:30, held to 00:15
    week = learn_week(starts, NOW, cfg, history_since=HISTORY_SINCE)
    wednesday = NEXT_TUESDAY + timedelta(days=1)
    before_midnight = at(wednesday, 0) - 300  # Tuesday 23:55, inside the lead
    found = due_now(before_midnight, week, cfg, boot_p95_s=BOOT_P95)
    assert found is not None and found.until == at(wednesday, 0, 15)


def test_the_first_visit_of_the_history_counts_in_its_slot() -> None:
    starts = [at(TUESDAY + timedelta(weeks=k), 17, 1) for k in range(4)]
    # the history begins with the first visit, a minute into its slot: that week is seen
    week = learn_week(starts, NOW, config(), history_since=starts[0])
    assert (week.hits[1][17 * 4], week.seen[1][17 * 4]) == (4, 4)


@given(
    st.lists(st.floats(min_value=0, max_value=40 * 86400.0), min_size=1, max_size=40),
    st.floats(min_value=0, max_value=45 * 86400.0),
    st.integers(min_value=1, max_value=6),
)
def test_no_slot_has_more_weeks_with_a_start_than_weeks_seen(
    offsets: list[float], now_offset: float, weeks: int
) -> None:
    origin = at(TUESDAY, 0)
    starts = [origin + o for o in offsets]
    week = learn_week(
        starts, origin + now_offset, config(weeks=weeks, min_weeks=1), history_since=min(starts)
    )
    for day in range(7):
        for slot in range(96):
            assert week.hits[day][slot] <= week.seen[day][slot]
