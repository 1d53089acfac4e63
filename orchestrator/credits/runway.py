"""The credit ledger's arithmetic, pure: change points in; time, cost, burn and runway out.

A cloud GPU bills while its machine runs, whatever is loaded, so billed hours are the hours the
host was powered, not the hours a model was loaded. The ledger knows the host was up only while
the orchestrator saw it (a run from start to clean stop, or to its last heartbeat): time when the
orchestrator was not running is counted as unpowered. Nothing here reads a clock or a file;
callers pass ``now`` (seconds since the epoch) and the points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from orchestrator.config import CostsConfig
from orchestrator.core.idle import ORDER, IdleState

DAY_S = 86400.0
HOUR_S = 3600.0


@dataclass(frozen=True)
class StateChange:
    at: float
    state: IdleState


@dataclass(frozen=True)
class PowerChange:
    at: float
    powered: bool


@dataclass(frozen=True)
class HostRun:
    """One stretch the orchestrator saw the host up: from start to clean stop or last heartbeat."""

    started_at: float
    last_seen: float
    stopped_at: float | None = None


def power_changes(runs: Sequence[HostRun], now: float, stale_after_s: float) -> list[PowerChange]:
    """Runs as on/off points. A run that ended without saying so (crash, power cut) ends at its
    last heartbeat; only the latest run, with a fresh heartbeat, counts as running until ``now``."""
    ordered = sorted(runs, key=lambda run: run.started_at)
    points: list[PowerChange] = []
    for index, run in enumerate(ordered):
        if run.stopped_at is not None:
            end = run.stopped_at
        elif index == len(ordered) - 1 and now - run.last_seen <= stale_after_s:
            end = now
        else:
            end = run.last_seen
        if index + 1 < len(ordered):
            end = min(end, ordered[index + 1].started_at)
        if end > run.started_at:
            points += [PowerChange(run.started_at, True), PowerChange(end, False)]
    return points


@dataclass(frozen=True)
class Usage:
    """Seconds spent in each idle state over [start, end], split by whether the host was powered."""

    start: float
    end: float
    powered_s: dict[IdleState, float]
    unpowered_s: dict[IdleState, float]

    @property
    def billed_s(self) -> float:
        return sum(self.powered_s.values())

    @property
    def billed_hours(self) -> float:
        return self.billed_s / HOUR_S

    def cost_usd(self, usd_per_hour: float) -> float:
        return self.billed_hours * usd_per_hour


def usage(
    states: Sequence[StateChange],
    power: Sequence[PowerChange],
    start: float,
    end: float,
    *,
    initial_state: IdleState = IdleState.ACTIVE,
) -> Usage:
    """Sweep both step functions over the window; before its first point the host is unpowered.
    Points at the same time apply in the order given."""
    points: list[tuple[float, IdleState | bool]] = [(c.at, c.state) for c in states]
    points += [(c.at, c.powered) for c in power]
    points.sort(key=lambda point: point[0])
    powered_s = dict.fromkeys(ORDER, 0.0)
    unpowered_s = dict.fromkeys(ORDER, 0.0)
    state, powered, cursor = initial_state, False, start

    def spend(until: float) -> None:
        nonlocal cursor
        if until > cursor:
            (powered_s if powered else unpowered_s)[state] += until - cursor
            cursor = until

    for at, value in points:
        if at >= end:
            break
        spend(at)
        if isinstance(value, IdleState):
            state = value
        else:
            powered = value
    spend(end)
    return Usage(start, max(start, end), powered_s, unpowered_s)


def burn_usd_per_day(spent_usd: float, span_s: float) -> float:
    """Spending rate over a span; zero for an empty span rather than a division by zero."""
    return spent_usd / (span_s / DAY_S) if span_s > 0 else 0.0


@dataclass(frozen=True)
class CreditStatus:
    grant_usd: float
    spent_usd: float
    remaining_usd: float
    burn_usd_per_day: float
    runway_days: float | None  # None: nothing burns, the credits last (until they expire)
    expires_in_days: float | None
    runs_out_at: float | None
    limited_by: str | None  # "credits", "expiry" or None


def credit_status(
    *, grant_usd: float, spent_usd: float, burn: float, now: float, expire_at: float | None
) -> CreditStatus:
    remaining = max(0.0, grant_usd - spent_usd)
    runway = remaining / burn if burn > 0 else None
    expires_in = None if expire_at is None else max(0.0, (expire_at - now) / DAY_S)
    candidates = [
        (d, why) for d, why in ((runway, "credits"), (expires_in, "expiry")) if d is not None
    ]
    days, limited_by = min(candidates, key=lambda c: c[0]) if candidates else (None, None)
    return CreditStatus(
        grant_usd=grant_usd,
        spent_usd=spent_usd,
        remaining_usd=remaining,
        burn_usd_per_day=burn,
        runway_days=runway,
        expires_in_days=expires_in,
        runs_out_at=None if days is None else now + days * DAY_S,
        limited_by=limited_by,
    )


def day_start(day: date) -> float:
    """Grant dates are whole UTC days."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def summarize(
    states: Sequence[StateChange],
    runs: Sequence[HostRun],
    costs: CostsConfig,
    *,
    now: float,
    stale_after_s: float,
    initial_state: IdleState = IdleState.ACTIVE,
) -> dict[str, Any]:
    """The console's and the CLI's view: totals since the grant began (or since the first run),
    and burn over the last ``costs.burn_window_days`` of recorded history."""
    power = power_changes(runs, now, stale_after_s)
    history_start = min((run.started_at for run in runs), default=now)
    since = day_start(costs.credits_start) if costs.credits_start else history_start
    since = min(since, now)
    total = usage(states, power, since, now, initial_state=initial_state)
    burn_from = min(now, max(now - costs.burn_window_days * DAY_S, history_start, since))
    recent = usage(states, power, burn_from, now, initial_state=initial_state)
    burn = burn_usd_per_day(recent.cost_usd(costs.usd_per_hour), now - burn_from)
    status = credit_status(
        grant_usd=costs.credits_usd,
        spent_usd=total.cost_usd(costs.usd_per_hour),
        burn=burn,
        now=now,
        expire_at=day_start(costs.credits_expire) if costs.credits_expire else None,
    )
    return {
        "gpu_type": costs.gpu_type,
        "usd_per_hour": costs.usd_per_hour,
        "since": since,
        "now": now,
        "hours_by_state": {
            state.value: {
                "powered": round(total.powered_s[state] / HOUR_S, 4),
                "unpowered": round(total.unpowered_s[state] / HOUR_S, 4),
            }
            for state in ORDER
        },
        "billed_hours": round(total.billed_hours, 4),
        "unpowered_hours": round(sum(total.unpowered_s.values()) / HOUR_S, 4),
        "cost_usd": round(status.spent_usd, 2),
        "credits": {
            "grant_usd": status.grant_usd,
            "start": costs.credits_start.isoformat() if costs.credits_start else None,
            "expire": costs.credits_expire.isoformat() if costs.credits_expire else None,
            "spent_usd": round(status.spent_usd, 2),
            "remaining_usd": round(status.remaining_usd, 2),
            "burn_usd_per_day": round(status.burn_usd_per_day, 4),
            "burn_window_days": costs.burn_window_days,
            "burn_measured_days": round((now - burn_from) / DAY_S, 3),
            "runway_days": _rounded(status.runway_days),
            "expires_in_days": _rounded(status.expires_in_days),
            "runs_out_at": status.runs_out_at,
            "limited_by": status.limited_by,
        },
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_credits(summary: dict[str, Any]) -> str:
    """A few lines for ``python -m orchestrator status``."""
    credits = summary["credits"]
    price = f"{summary['gpu_type']} at ${summary['usd_per_hour']:.2f}/h"
    lines = [
        f"credits  ${credits['remaining_usd']:.2f} left of ${credits['grant_usd']:.2f}"
        f" (${credits['spent_usd']:.2f} spent since {_when(summary['since'])}; {price})",
        f"billed   {summary['billed_hours']:.1f} h powered, {summary['unpowered_hours']:.1f} h off",
    ]
    parts = [
        f"{name} {hours['powered']:.1f} h" for name, hours in summary["hours_by_state"].items()
    ]
    lines.append(f"powered  {', '.join(parts)}")
    burn = (
        f"burn     ${credits['burn_usd_per_day']:.2f}/day over {credits['burn_measured_days']:g} d"
    )
    if credits["runway_days"] is None:
        burn += ", no runway limit from spending"
    else:
        burn += f", runway {credits['runway_days']:.1f} days"
    if credits["expires_in_days"] is not None:
        burn += f"; grant expires in {credits['expires_in_days']:.1f} days"
    if credits["runs_out_at"] is not None:
        burn += f" -> runs out {_when(credits['runs_out_at'])} ({credits['limited_by']})"
    lines.append(burn)
    return "\n".join(lines)
