"""Replay a usage trace through the gateway's policies: billed hours and first-answer waits.

The gateway (``orchestrator/gateway``) stops the host after an idle stop (``stop_after_s`` plus
``drain_s``) and starts it when a request comes, when the app's wake hint comes (the app opens
``hint_lead_s`` before its first request and calls ``POST /v1/wake``), or when the learned
pre-warm plans it (``prewarm.py``). The host model is the one ``simulator.py`` uses for
today's policies: a start takes ``host_boot_s`` until the host answers ready (the gateway's
measured boot ETA, so its p95 is that too), then the first request loads the roles it needs in
parallel; loaded roles stay until the host stops. With the cold-start bridge the first answer
comes ``bridge_s`` after the first request whenever the host is not yet ready (a bridged session).

No peeking: at each local midnight the learned policy plans the day and learns its idle stop
from sessions (and hints) that started before that midnight, ends known before it.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from orchestrator.config.gateway import PrewarmConfig
from orchestrator.credits.prewarm import (
    Visit,
    day_start,
    learn_week,
    learned_idle_stop,
    plan_day,
    zone,
)
from orchestrator.credits.simulator import HOUR_S, LONG_WAIT_S, Session, WakeCosts, percentile

DEFAULT_IDLE_STOPS_MIN = (5.0, 10.0, 15.0, 30.0)
DEFAULT_HINT_LEAD_S = 30.0
DEFAULT_BRIDGE_S = 3.0  # the bridge's first answer, after the first request

_DAY, _WAKE, _OPEN, _CLOSE, _STOP = range(5)  # order of events at the same instant


@dataclass(frozen=True)
class GatewayPolicy:
    name: str
    idle_stop_s: float | None  # None: learned (``prewarm`` must be set)
    prewarm: PrewarmConfig | None = None
    bridge: bool = False


def gateway_policies(
    prewarm: PrewarmConfig, idle_stops_min: Sequence[float] = DEFAULT_IDLE_STOPS_MIN
) -> list[GatewayPolicy]:
    """Fixed idle stops and the learned pre-warm, each without and with the bridge."""
    bases = [GatewayPolicy(f"gateway idle {m:g} min", m * 60.0) for m in idle_stops_min]
    bases.append(GatewayPolicy("gateway learned pre-warm", None, prewarm))
    return [
        GatewayPolicy(p.name + (" + bridge" if bridge else ""), p.idle_stop_s, p.prewarm, bridge)
        for p in bases
        for bridge in (False, True)
    ]


@dataclass(frozen=True)
class GatewaySimResult:
    policy: str
    span_s: float
    billed_s: float
    waits: tuple[float, ...]  # per session: its first answer after its first request
    bridged: int
    gateway_usd: float

    def to_dict(self, usd_per_hour: float) -> dict[str, Any]:
        waits = {
            "p50": percentile(self.waits, 50),
            "p99": percentile(self.waits, 99),
            "max": percentile(self.waits, 100),
        }
        return {
            "policy": self.policy,
            "always_on_hours": round(self.span_s / HOUR_S, 3),
            "billed_hours": round(self.billed_s / HOUR_S, 3),
            "cost_usd": round(self.billed_s / HOUR_S * usd_per_hour, 2),
            "credit_multiplier": round(self.span_s / self.billed_s, 3) if self.billed_s else None,
            "sessions": len(self.waits),
            "sessions_waiting": sum(1 for w in self.waits if w > 0),
            "wakes": {},  # the gateway has no ladder: the host is on or off
            "long_waits": sum(1 for w in self.waits if w > LONG_WAIT_S),
            "bridged_sessions": self.bridged,
            "first_answer_wait_s": waits,
            "wait_s": waits,  # the name today's policies use for it
            "gateway_usd": round(self.gateway_usd, 2),
        }


@dataclass(frozen=True)
class GatewayCosts:
    """What the gateway adds: its hint lead, the bridge, its drain and the VM's price."""

    hint_lead_s: float = DEFAULT_HINT_LEAD_S
    bridge_s: float = DEFAULT_BRIDGE_S
    drain_s: float = 30.0
    fallback_idle_s: float = 600.0  # ``stop_after_s``: the learned policy's fallback
    usd_per_hour: float = 0.0


def simulate_gateway(
    sessions: Sequence[Session], policy: GatewayPolicy, costs: WakeCosts, gateway: GatewayCosts
) -> GatewaySimResult:
    if not sessions:
        return GatewaySimResult(policy.name, 0.0, 0.0, (), 0, 0.0)
    return _GatewayReplay(sessions, policy, costs, gateway).run()


class _GatewayReplay:
    def __init__(
        self,
        sessions: Sequence[Session],
        policy: GatewayPolicy,
        costs: WakeCosts,
        gateway: GatewayCosts,
    ) -> None:
        self.sessions, self.policy, self.costs, self.gateway = sessions, policy, costs, gateway
        self.start = min(s.start for s in sessions)
        self.end = max(s.end for s in sessions)
        self.load_s = max((costs.load_s[r] for r in costs.needs), default=0.0)
        self.on, self.on_since, self.ready_at = False, 0.0, -math.inf
        self.loaded_at: float | None = None
        self.billed, self.open, self.last_used, self.hold_until = 0.0, 0, -math.inf, -math.inf
        self.idle_s = policy.idle_stop_s if policy.idle_stop_s is not None else 0.0
        self.stop_version = 0
        self.events: list[tuple[float, int, int, float]] = []
        self.waits = [0.0] * len(sessions)
        self.bridged = 0

    def _push(self, at: float, kind: int, index: int = 0, until: float = 0.0) -> None:
        heapq.heappush(self.events, (at, kind, index, until))

    def run(self) -> GatewaySimResult:
        hint = self.gateway.hint_lead_s
        for i, session in enumerate(self.sessions):
            if hint > 0:
                self._push(session.start - hint, _WAKE, 0, session.start)
            self._push(session.start, _OPEN, i)
            self._push(session.end, _CLOSE, i)
        if self.policy.idle_stop_s is None:
            self._push_days()
        while self.events:
            at, kind, index, until = heapq.heappop(self.events)
            if at > self.end:
                break
            if kind == _DAY:
                self._new_day(at)
            elif kind == _WAKE:
                self._wake(at, until)
            elif kind == _OPEN:
                self._open(at, index)
            elif kind == _CLOSE:
                self.open -= 1
                self.last_used = at
            elif index != self.stop_version:
                continue  # a stop made stale by a later event: that event scheduled its own
            elif self.open == 0 and self.on:
                self.on = False
                self.billed += at - max(self.on_since, self.start)
            self._schedule_stop()
        if self.on:
            self.billed += self.end - max(self.on_since, self.start)
        return GatewaySimResult(
            self.policy.name,
            self.end - self.start,
            self.billed,
            tuple(self.waits),
            self.bridged,
            (self.end - self.start) / HOUR_S * self.gateway.usd_per_hour,
        )

    def _push_days(self) -> None:
        assert self.policy.prewarm is not None
        tz = zone(self.policy.prewarm)
        day = datetime.fromtimestamp(self.start, tz).date()
        while day_start(day, tz) <= self.end:
            self._push(day_start(day, tz), _DAY)
            day += timedelta(days=1)

    def _new_day(self, midnight: float) -> None:
        """Plan the day from what happened before ``midnight`` only."""
        config = self.policy.prewarm
        assert config is not None
        tz = zone(config)
        known = [s for s in self.sessions if s.start < midnight]
        visits = [Visit(s.start, s.end) for s in known if s.end < midnight]
        starts = [s.start for s in known]
        if self.gateway.hint_lead_s > 0:
            starts += [s.start - self.gateway.hint_lead_s for s in known]
        history_since = day_start(datetime.fromtimestamp(self.start, tz).date(), tz)
        week = learn_week(starts, midnight, config, history_since=history_since)
        fallback = self.gateway.fallback_idle_s
        self.idle_s = learned_idle_stop(visits, midnight, config, fallback_s=fallback).seconds
        day = datetime.fromtimestamp(midnight, tz).date()
        for planned in plan_day(day, week, config, boot_p95_s=self.costs.host_boot_s):
            self._push(max(planned.at, midnight), _WAKE, 0, planned.until)

    def _wake(self, at: float, until: float) -> None:
        if not self.on:
            self.on, self.on_since = True, at
            self.ready_at = at + self.costs.host_boot_s
            self.loaded_at = None
        self.hold_until = max(self.hold_until, until)
        self.last_used = max(self.last_used, at)

    def _open(self, at: float, index: int) -> None:
        self._wake(at, at)
        self.open += 1
        self.last_used = at
        if self.loaded_at is None:
            self.loaded_at = max(at, self.ready_at) + self.load_s
        wait = max(0.0, self.loaded_at - at)
        if self.policy.bridge and self.ready_at > at:
            wait = min(wait, self.gateway.bridge_s)
            self.bridged += 1
        self.waits[index] = wait

    def _schedule_stop(self) -> None:
        """After any event: the stop that is due if nothing else happens (older ones lapse)."""
        self.stop_version += 1
        if self.on and self.open == 0:
            idle_from = max(self.last_used, self.hold_until)
            deadline = max(idle_from + self.idle_s + self.gateway.drain_s, self.ready_at)
            self._push(deadline, _STOP, self.stop_version)
