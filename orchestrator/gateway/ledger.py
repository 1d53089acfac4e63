"""What the GPU host and the gateway cost: billed time from the host's transitions, pure.

A cloud bills a machine from the moment it is asked to start until it has stopped, whatever the
orchestrator on it does. The host's transitions (``store.py``) say when that was:

    billing starts   at a transition to ``starting`` (a start asked), or to ``booting``,
                     ``ready``, ``draining`` or ``stopping`` while not billing (a machine found
                     running: adopted after a gateway restart, or started by hand)
    billing ends     at a transition to ``stopped``, or to ``failed`` when the provider said then
                     that the machine is stopped or stopping (a start refused for want of
                     capacity). No later transition will say when a stopping machine stopped,
                     so it ends there rather than at the next start.

A ``failed`` whose machine the provider saw running, starting or not at all keeps billing: when
the credits are what runs out, an over-count is the safer error. An interval still open is
counted up to ``now``; time before the first transition is unknown and not billed (pass the
whole history). The gateway's own VM bills always, from its configured start (else the first
transition), at ``[gateway] usd_per_hour``. Days and months are UTC, as the grant's dates are.

Nothing here reads a clock or a file: callers pass the transitions, the window and ``now``.
The credit arithmetic is ``orchestrator.credits.runway``'s, fed the combined burn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from orchestrator.config import CostsConfig
from orchestrator.credits.runway import (
    DAY_S,
    HOUR_S,
    CreditStatus,
    burn_usd_per_day,
    credit_status,
    day_start,
)
from orchestrator.gateway.lifecycle import HostState, expected_start_s
from orchestrator.gateway.providers.base import PowerState
from orchestrator.gateway.store import HostTransition

S = HostState
_ENDS_ON_FAILURE = frozenset({PowerState.STOPPED.value, PowerState.STOPPING.value})


@dataclass(frozen=True)
class Interval:
    """One stretch the host was billed; ``end`` None while it still is."""

    start: float
    end: float | None = None


def bills_after(transition: HostTransition) -> bool:
    """Whether the machine bills once this transition has happened."""
    if transition.target == S.STOPPED.value:
        return False
    if transition.target == S.FAILED.value:
        return transition.power not in _ENDS_ON_FAILURE
    return True


def billed_intervals(transitions: Sequence[HostTransition]) -> list[Interval]:
    """The stretches the host was billed, oldest first (``transitions`` oldest first)."""
    intervals: list[Interval] = []
    opened: float | None = None
    for transition in transitions:
        billing = bills_after(transition)
        if billing and opened is None:
            opened = transition.at
        elif not billing and opened is not None:
            intervals.append(Interval(opened, transition.at))
            opened = None
    if opened is not None:
        intervals.append(Interval(opened))
    return intervals


def overlap_s(intervals: Sequence[Interval], since: float, until: float, now: float) -> float:
    """Seconds of ``intervals`` inside [since, until], none after ``now``; open ones end at now."""
    stop = min(until, now)
    total = 0.0
    for interval in intervals:
        end = now if interval.end is None else interval.end
        total += max(0.0, min(end, stop) - max(interval.start, since))
    return total


def billed_s(
    transitions: Sequence[HostTransition], since: float, until: float, now: float
) -> float:
    """The host's billed seconds inside [since, until] as of ``now``."""
    return overlap_s(billed_intervals(transitions), since, until, now)


def gateway_s(started_at: float | None, since: float, until: float, now: float) -> float:
    """The gateway VM's seconds inside [since, until]: it runs always from ``started_at``."""
    if started_at is None:
        return 0.0
    return overlap_s([Interval(started_at)], since, until, now)


Outcome = Literal["ready", "failed", "stopped", "pending"]


@dataclass(frozen=True)
class Start:
    """One start asked: when, how it ended, and how long it took to ready when it did."""

    at: float
    outcome: Outcome
    ready_after_s: float | None = None


def starts(transitions: Sequence[HostTransition]) -> list[Start]:
    """Every transition to ``starting``, followed to ready, failed or stopped. A gateway restart
    on the way (``stopped -> booting``, adopted) does not end it, as the controller measures."""
    found: list[Start] = []
    opened: float | None = None
    for transition in transitions:
        target = transition.target
        if target == S.STARTING.value:
            if opened is not None:
                found.append(Start(opened, "failed"))
            opened = transition.at
        elif opened is None or target == S.BOOTING.value:
            continue
        elif target == S.READY.value:
            found.append(Start(opened, "ready", transition.at - opened))
            opened = None
        else:
            outcome: Outcome = "failed" if target == S.FAILED.value else "stopped"
            found.append(Start(opened, outcome))
            opened = None
    if opened is not None:
        found.append(Start(opened, "pending"))
    return found


@dataclass(frozen=True)
class Bill:
    """Hours, dollars and starts over one stretch [since, until] (cut at ``now``)."""

    since: float
    until: float
    host_hours: float
    host_usd: float
    gateway_hours: float
    gateway_usd: float
    starts: int
    failed_starts: int

    @property
    def total_usd(self) -> float:
        return self.host_usd + self.gateway_usd

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "until": self.until,
            "day": _day_of(self.since).isoformat(),
            "host_hours": round(self.host_hours, 4),
            "host_usd": round(self.host_usd, 4),
            "gateway_hours": round(self.gateway_hours, 4),
            "gateway_usd": round(self.gateway_usd, 4),
            "total_usd": round(self.total_usd, 4),
            "starts": self.starts,
            "failed_starts": self.failed_starts,
        }


@dataclass(frozen=True)
class Prices:
    host_usd_per_hour: float  # [costs] usd_per_hour: the GPU host while it runs
    gateway_usd_per_hour: float  # [gateway] usd_per_hour: the gateway's VM, always


@dataclass(frozen=True)
class History:
    """The transitions, digested once: billed stretches, starts, and when the gateway began."""

    intervals: tuple[Interval, ...]
    starts: tuple[Start, ...]
    gateway_since: float | None

    @classmethod
    def of(
        cls, transitions: Sequence[HostTransition], gateway_since: float | None = None
    ) -> History:
        first = transitions[0].at if transitions else None
        since = gateway_since if gateway_since is not None else first
        return cls(tuple(billed_intervals(transitions)), tuple(starts(transitions)), since)

    @property
    def begins(self) -> float | None:
        """The earliest known moment: the gateway's start or the first billed stretch."""
        known = [i.start for i in self.intervals[:1]]
        known += [self.gateway_since] if self.gateway_since is not None else []
        return min(known, default=None)

    def cost_usd(self, prices: Prices, since: float, until: float, now: float) -> float:
        host = overlap_s(self.intervals, since, until, now) * prices.host_usd_per_hour
        vm = gateway_s(self.gateway_since, since, until, now) * prices.gateway_usd_per_hour
        return (host + vm) / HOUR_S

    def bill(self, prices: Prices, since: float, until: float, now: float) -> Bill:
        host_h = overlap_s(self.intervals, since, until, now) / HOUR_S
        vm_h = gateway_s(self.gateway_since, since, until, now) / HOUR_S
        inside = [s for s in self.starts if since <= s.at < until and s.at <= now]
        return Bill(
            since=since,
            until=until,
            host_hours=host_h,
            host_usd=host_h * prices.host_usd_per_hour,
            gateway_hours=vm_h,
            gateway_usd=vm_h * prices.gateway_usd_per_hour,
            starts=len(inside),
            failed_starts=sum(1 for s in inside if s.outcome == "failed"),
        )


@dataclass(frozen=True)
class GatewayLedger:
    """``GET /v1/host/ledger``, the console's money cards and ``status``'s billed lines."""

    now: float
    prices: Prices
    gpu_type: str
    today: Bill
    month: Bill
    days: tuple[Bill, ...]  # the last N UTC days, oldest first, today last
    measured_starts: int  # starts in those days that reached ready
    start_p50_s: float | None  # their start-to-ready; None before any
    start_p95_s: float | None
    credits_since: float  # spent is counted from here: the grant's start, else the history's
    burn_since: float  # the burn is measured from here (the last burn_window_days at most)
    credits: CreditStatus
    credits_start: date | None = None
    credits_expire: date | None = None

    def to_json(self) -> dict[str, Any]:
        status = asdict(self.credits)
        money = ("grant_usd", "spent_usd", "remaining_usd")
        credits = {k: round(v, 2) if k in money else v for k, v in status.items()}
        credits["burn_usd_per_day"] = round(self.credits.burn_usd_per_day, 4)
        for key in ("runway_days", "expires_in_days"):
            credits[key] = None if status[key] is None else round(status[key], 2)
        return {
            "now": self.now,
            "gpu_type": self.gpu_type,
            **asdict(self.prices),
            "today": self.today.to_json(),
            "month": self.month.to_json(),
            "days": [day.to_json() for day in self.days],
            "start_to_ready": {
                "measured": self.measured_starts,
                "p50_s": _rounded(self.start_p50_s),
                "p95_s": _rounded(self.start_p95_s),
            },
            "credits": {
                **credits,
                "since": self.credits_since,
                "start": _iso(self.credits_start),
                "expire": _iso(self.credits_expire),
                "burn_measured_days": round((self.now - self.burn_since) / DAY_S, 3),
            },
        }


def gateway_ledger(
    transitions: Sequence[HostTransition],
    costs: CostsConfig,
    gateway_usd_per_hour: float,
    *,
    now: float,
    days: int = 30,
    gateway_since: float | None = None,
) -> GatewayLedger:
    """The summary as of ``now``: today, this month, the last ``days`` days, the starts, and the
    credits with host and gateway burning together."""
    history = History.of(transitions, gateway_since)
    prices = Prices(costs.usd_per_hour, gateway_usd_per_hour)
    today = _day_of(now)
    series = tuple(
        _day_bill(history, prices, today - timedelta(days=back), now)
        for back in range(max(1, days) - 1, -1, -1)
    )
    recent = [
        s.ready_after_s
        for s in history.starts
        if s.ready_after_s is not None and series[0].since <= s.at <= now
    ]
    p50, p95 = expected_start_s(recent, 0.0) if recent else (None, None)

    begins = history.begins if history.begins is not None else now
    credits_since = min(day_start(costs.credits_start) if costs.credits_start else begins, now)
    burn_since = min(now, max(now - costs.burn_window_days * DAY_S, begins, credits_since))
    burn = burn_usd_per_day(history.cost_usd(prices, burn_since, now, now), now - burn_since)
    expire_at = day_start(costs.credits_expire) if costs.credits_expire else None
    status = credit_status(
        grant_usd=costs.credits_usd,
        spent_usd=history.cost_usd(prices, credits_since, now, now),
        burn=burn,
        now=now,
        expire_at=expire_at,
    )
    month = today.replace(day=1)
    next_month = (month + timedelta(days=32)).replace(day=1)
    return GatewayLedger(
        now=now,
        prices=prices,
        gpu_type=costs.gpu_type,
        today=series[-1],
        month=history.bill(prices, day_start(month), day_start(next_month), now),
        days=series,
        measured_starts=len(recent),
        start_p50_s=p50,
        start_p95_s=p95,
        credits_since=credits_since,
        burn_since=burn_since,
        credits=status,
        credits_start=costs.credits_start,
        credits_expire=costs.credits_expire,
    )


def _day_bill(history: History, prices: Prices, day: date, now: float) -> Bill:
    since = day_start(day)
    return history.bill(prices, since, since + DAY_S, now)


def _day_of(at: float) -> date:
    return datetime.fromtimestamp(at, UTC).date()


def _iso(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
