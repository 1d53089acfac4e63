"""Learned pre-warm: when to start the host before students come, and how long to keep it on.

Pure: the history (session starts and ends, the app's wake hints) and ``now`` are passed in.
The gateway's scheduler fires what ``plan_day`` returns and stops the host after
``learned_idle_stop``; the simulator (``gateway_sim.py``) replays the same functions day by day,
each day learning only from the days before it, so what it reports is what the gateway would do.

    week      for each weekday x 15-minute slot (local time, ``[gateway.prewarm] timezone``):
              in how many of the last ``weeks`` weeks a session (or a wake hint) started in it,
              out of how many weeks the history covers (holidays count in neither)
    plan      slots whose share reaches ``threshold`` (with at least ``min_weeks`` seen), merged
              into runs; each run's host start is its first slot's start minus the boot ETA's
              p95 and ``margin_s``. Holidays: none. Keep-on windows: on from start to end.
    idle stop the ``idle_percentile`` of the gaps between sessions within a day, clamped to
              [idle_min_s, idle_max_s]; ``stop_after_s`` with fewer than ``min_gaps`` gaps

It lives in ``credits`` (below the gateway in the layers, importing only config) so that the
gateway and the simulator share it without the simulator importing the gateway.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from orchestrator.config.gateway import KeepOnWindow, PrewarmConfig

SLOT_S = 900.0
SLOTS_PER_DAY = 96
WEEK_S = 7 * 86400.0
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class Visit:
    """One entry of the gateway's history: a session (start, end) or a wake hint (end = start)."""

    start: float
    end: float
    hint: bool = False


@dataclass(frozen=True)
class Week:
    """The learned week: per weekday x slot, weeks with a start (``hits``) out of ``seen``."""

    hits: tuple[tuple[int, ...], ...]  # [weekday][slot]
    seen: tuple[tuple[int, ...], ...]

    def share(self, weekday: int, slot: int) -> float:
        seen = self.seen[weekday][slot]
        return self.hits[weekday][slot] / seen if seen else 0.0

    def to_json(self) -> dict[str, Any]:
        """The heat map the console draws: one row of 96 shares per weekday."""
        return {
            "slot_s": SLOT_S,
            "days": list(DAYS),
            "share": [[round(self.share(d, s), 3) for s in range(SLOTS_PER_DAY)] for d in range(7)],
            "weeks_seen": [max(row) for row in self.seen],
        }


@dataclass(frozen=True)
class PlannedStart:
    """Start the host at ``at`` and keep it on at least until ``until``; ``why`` says why."""

    at: float
    until: float
    kind: Literal["prewarm", "keep_on"]
    why: str

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "until": self.until, "kind": self.kind, "why": self.why}


@dataclass(frozen=True)
class IdleStop:
    seconds: float
    learned: bool
    why: str


def zone(config: PrewarmConfig) -> ZoneInfo:
    return ZoneInfo(config.timezone)


def _local(at: float, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(at, tz)


def _slot(moment: datetime) -> int:
    return (moment.hour * 3600 + moment.minute * 60 + moment.second) // int(SLOT_S)


def slot_start(day: date, slot: int, tz: ZoneInfo) -> float:
    minutes = slot * int(SLOT_S) // 60
    return datetime.combine(day, time(minutes // 60, minutes % 60), tz).timestamp()


def day_start(day: date, tz: ZoneInfo) -> float:
    return datetime.combine(day, time(0, 0), tz).timestamp()


def learn_week(
    starts: Iterable[float], now: float, config: PrewarmConfig, *, history_since: float
) -> Week:
    """Count, over the last ``weeks`` weeks before ``now`` (from ``history_since`` at the
    earliest, when the history began), the weeks in which each slot had a start."""
    tz = zone(config)
    began = _local(history_since, tz)  # the history covers the first start's slot whole
    since = max(now - config.weeks * WEEK_S, slot_start(began.date(), _slot(began), tz))
    holidays = set(config.holidays)
    hits = [[0] * SLOTS_PER_DAY for _ in range(7)]
    seen = [[0] * SLOTS_PER_DAY for _ in range(7)]
    day = _local(since, tz).date()
    last = _local(now, tz).date()
    while day <= last:
        if day not in holidays:
            for slot in range(SLOTS_PER_DAY):
                begin = slot_start(day, slot, tz)
                if begin >= since and begin + SLOT_S <= now:
                    seen[day.weekday()][slot] += 1
        day += timedelta(days=1)
    marked: set[tuple[date, int]] = set()
    for at in starts:
        if since <= at < now:
            moment = _local(at, tz)
            if moment.date() not in holidays:
                marked.add((moment.date(), _slot(moment)))
    for day, slot in marked:
        begin = slot_start(day, slot, tz)
        if begin >= since and begin + SLOT_S <= now:  # a slot counted in ``seen`` above
            hits[day.weekday()][slot] += 1
    return Week(tuple(map(tuple, hits)), tuple(map(tuple, seen)))


def _hhmm(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60 % 24:02d}:{minutes % 60:02d}"


def keep_on_windows(day: date, config: PrewarmConfig) -> list[KeepOnWindow]:
    return [
        w
        for w in config.keep_on
        if w.from_date <= day <= w.to_date and (not w.weekdays or day.weekday() in w.weekdays)
    ]


def _window_bounds(day: date, window: KeepOnWindow, tz: ZoneInfo) -> tuple[float, float]:
    begin = datetime.combine(day, time.fromisoformat(window.start), tz).timestamp()
    end = datetime.combine(day, time.fromisoformat(window.end), tz).timestamp()
    return begin, end


def keep_on_until(at: float, config: PrewarmConfig) -> float | None:
    """The end of the keep-on window ``at`` falls in, if any (the host must not stop before)."""
    tz = zone(config)
    day = _local(at, tz).date()
    ends = [
        end
        for w in keep_on_windows(day, config)
        for begin, end in [_window_bounds(day, w, tz)]
        if begin <= at < end
    ]
    return max(ends) if ends else None


def plan_day(
    day: date, week: Week, config: PrewarmConfig, *, boot_p95_s: float
) -> list[PlannedStart]:
    """The host starts planned for ``day`` (local), by time; none on a holiday."""
    if day in config.holidays:
        return []
    tz = zone(config)
    lead = boot_p95_s + config.margin_s
    planned: list[PlannedStart] = []
    windows = [(w, *_window_bounds(day, w, tz)) for w in keep_on_windows(day, config)]
    for window, begin, end in windows:
        why = (
            f"keep-on window {window.from_date}..{window.to_date} {window.start}-{window.end};"
            f" started {lead:.0f} s early (boot p95 {boot_p95_s:.0f} s + margin"
            f" {config.margin_s:.0f} s)"
        )
        planned.append(PlannedStart(begin - lead, end, "keep_on", why))
    weekday = day.weekday()
    run: list[int] = []
    for slot in range(SLOTS_PER_DAY + 1):
        begin = slot_start(day, slot, tz) if slot < SLOTS_PER_DAY else math.inf
        covered = any(b <= begin < e for _, b, e in windows)
        wanted = (
            slot < SLOTS_PER_DAY
            and not covered
            and week.seen[weekday][slot] >= config.min_weeks
            and week.share(weekday, slot) >= config.threshold
        )
        if wanted:
            run.append(slot)
        elif run:
            planned.append(_prewarm(day, run, week, config, tz, boot_p95_s))
            run = []
    return sorted(planned, key=lambda p: p.at)


def _prewarm(
    day: date, run: list[int], week: Week, config: PrewarmConfig, tz: ZoneInfo, boot_p95_s: float
) -> PlannedStart:
    weekday = day.weekday()
    first, last = slot_start(day, run[0], tz), slot_start(day, run[-1], tz)
    hits = week.hits[weekday][run[0]]
    seen = week.seen[weekday][run[0]]
    lead = boot_p95_s + config.margin_s
    span = f"{_hhmm(run[0] * SLOT_S)}-{_hhmm((run[-1] + 1) * SLOT_S)}"
    why = (
        f"{DAYS[weekday]} {span}: sessions started in {hits} of the last {seen} weeks at"
        f" {_hhmm(run[0] * SLOT_S)} (threshold {config.threshold:.0%}); started {lead:.0f} s"
        f" early (boot p95 {boot_p95_s:.0f} s + margin {config.margin_s:.0f} s)"
    )
    return PlannedStart(first - lead, last, "prewarm", why)


def next_start(
    now: float, week: Week, config: PrewarmConfig, *, boot_p95_s: float, days: int = 8
) -> PlannedStart | None:
    """The first planned start at or after ``now`` within ``days`` days."""
    tz = zone(config)
    today = _local(now, tz).date()
    for offset in range(days):
        for planned in plan_day(
            today + timedelta(days=offset), week, config, boot_p95_s=boot_p95_s
        ):
            if planned.at >= now:
                return planned
    return None


def due_now(
    now: float, week: Week, config: PrewarmConfig, *, boot_p95_s: float
) -> PlannedStart | None:
    """The planned start whose span [at, until) holds ``now``, if any: what a gateway that
    (re)starts in the middle of a pre-warm run or keep-on window must still act on."""
    today = _local(now, zone(config)).date()
    due = [
        planned
        for day in (today, today + timedelta(days=1))  # a start before midnight for 00:00
        for planned in plan_day(day, week, config, boot_p95_s=boot_p95_s)
        if planned.at <= now < planned.until
    ]
    return max(due, key=lambda p: p.until) if due else None


def nearest_rank(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: a value that occurred."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100.0 * len(ordered))) - 1]


def day_gaps(visits: Iterable[Visit], tz: ZoneInfo, *, since: float, now: float) -> list[float]:
    """Idle gaps between sessions of one local day (overlaps leave none); hints are not sessions."""
    by_day: dict[date, list[Visit]] = {}
    for visit in visits:
        if not visit.hint and since <= visit.start and visit.end < now:
            by_day.setdefault(_local(visit.start, tz).date(), []).append(visit)
    gaps: list[float] = []
    for day_visits in by_day.values():
        day_visits.sort(key=lambda v: v.start)
        reach = day_visits[0].end
        for visit in day_visits[1:]:
            if visit.start > reach:
                gaps.append(visit.start - reach)
            reach = max(reach, visit.end)
    return gaps


def learned_idle_stop(
    visits: Iterable[Visit], now: float, config: PrewarmConfig, *, fallback_s: float
) -> IdleStop:
    """How long the host stays on after the last use: learned, or ``fallback_s``."""
    since = now - config.weeks * WEEK_S
    gaps = day_gaps(visits, zone(config), since=since, now=now)
    if len(gaps) < config.min_gaps:
        why = (
            f"{len(gaps)} gaps known, fewer than {config.min_gaps}: stop_after_s {fallback_s:.0f} s"
        )
        return IdleStop(fallback_s, False, why)
    raw = nearest_rank(gaps, config.idle_percentile)
    seconds = min(max(raw, config.idle_min_s), config.idle_max_s)
    why = (
        f"p{config.idle_percentile:g} of {len(gaps)} gaps within a day is {raw:.0f} s"
        f", clamped to [{config.idle_min_s:.0f}, {config.idle_max_s:.0f}]: {seconds:.0f} s"
    )
    return IdleStop(seconds, True, why)
