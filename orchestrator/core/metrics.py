"""Prometheus metrics, kept in a registry of our own so several servers can live in one process.

What ``/metrics`` says (the GPU gauges, ``vo_gpu_*`` and ``vo_vram_*``, are in
``orchestrator.gpu.metrics`` on the same registry)::

    vo_engine_state{engine,state}                       1 for each engine's state (one-hot)
    vo_engine_memory_bytes{engine,kind,source}          ram|vram, estimated|measured|parked
    vo_engine_loads_total{engine,result}                vo_engine_unloads_total{engine}
    vo_engine_load_seconds{engine}                      vo_engine_unload_seconds{engine}
    vo_hibernation_state{state}                         1 for the idle state (one-hot)
    vo_hibernation_time_in_state_seconds                since the last transition
    vo_hibernation_transitions_total{source,target}
    vo_hibernation_wake_seconds{source}                 a wake, by the state woken from
    vo_http_requests_total{route,method,status}         route: the route's template
    vo_http_request_duration_seconds{route,method,status}   (WebSocket sessions left out)
    vo_sessions_open{protocol,backend}                  realtime|duplex, cascade|duplex
    vo_turn_stage_seconds{stage}                        a spoken turn's stages
    vo_time_to_first_audio_seconds                      end of speech -> first audio sent
    vo_fallback_switches_total{role,source,target}
    vo_host_billed_seconds{state}                       the credit ledger, since the grant began
    vo_credits_grant_usd, vo_credits_spent_usd, vo_credits_remaining_usd
    vo_credits_runway_seconds                           +Inf while nothing burns or expires

Counters and histograms move where things happen; gauges that describe "now" (engine states,
time in state, open sessions, credits) are set by the ``/metrics`` handler just before it
renders. The hibernation metrics hear the single writer through its record hook, so this
module measures and never decides.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from orchestrator.core.idle import ORDER, IdleState
from orchestrator.core.store import TransitionRecord
from services.base import EngineState

LOAD_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
WAKE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
TURN_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Every (protocol, backend) pair a session can have is exported, at 0 when none is open.
SESSION_KINDS = (
    ("realtime", "cascade"),
    ("realtime", "duplex"),
    ("duplex", "cascade"),
    ("duplex", "duplex"),
)
DAY_S = 86400.0
HOUR_S = 3600.0


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._entered_at: float | None = None  # when the current idle state began
        self._engine_metrics()
        self._hibernation_metrics()
        self._request_metrics()
        self._credit_metrics()

    def _engine_metrics(self) -> None:
        self.engine_state = Gauge(
            "vo_engine_state",
            "1 for the state each engine is in, 0 for the others",
            ["engine", "state"],
            registry=self.registry,
        )
        self.engine_memory = Gauge(
            "vo_engine_memory_bytes",
            "Engine memory by kind (ram|vram) and source (estimated|measured|parked)",
            ["engine", "kind", "source"],
            registry=self.registry,
        )
        self.loads = Counter(
            "vo_engine_loads",
            "Engine loads by result",
            ["engine", "result"],
            registry=self.registry,
        )
        self.unloads = Counter(
            "vo_engine_unloads", "Engine unloads", ["engine"], registry=self.registry
        )
        self.load_seconds = Histogram(
            "vo_engine_load_seconds",
            "Time to load an engine",
            ["engine"],
            buckets=LOAD_BUCKETS,
            registry=self.registry,
        )
        self.unload_seconds = Histogram(
            "vo_engine_unload_seconds",
            "Time to unload an engine",
            ["engine"],
            buckets=LOAD_BUCKETS,
            registry=self.registry,
        )

    def _hibernation_metrics(self) -> None:
        self.hibernation_state = Gauge(
            "vo_hibernation_state",
            "1 for the idle state the server is in, 0 for the others",
            ["state"],
            registry=self.registry,
        )
        self.time_in_state = Gauge(
            "vo_hibernation_time_in_state_seconds",
            "Seconds since the last hibernation transition (since start when none is stored)",
            registry=self.registry,
        )
        self.transitions = Counter(
            "vo_hibernation_transitions",
            "Hibernation transitions by source and target state",
            ["source", "target"],
            registry=self.registry,
        )
        self.wake_seconds = Histogram(
            "vo_hibernation_wake_seconds",
            "From the activity that woke the server until no engine was loading, by the state"
            " woken from",
            ["source"],
            buckets=WAKE_BUCKETS,
            registry=self.registry,
        )

    def _request_metrics(self) -> None:
        self.requests = Counter(
            "vo_http_requests",
            "Voice API requests answered, by route template, method and status code",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "vo_http_request_duration_seconds",
            "Voice API request time until the handler returned (WebSocket sessions left out)",
            ["route", "method", "status"],
            buckets=HTTP_BUCKETS,
            registry=self.registry,
        )
        self.sessions_open = Gauge(
            "vo_sessions_open",
            "Open voice sessions by protocol (realtime|duplex) and back-end (cascade|duplex)",
            ["protocol", "backend"],
            registry=self.registry,
        )
        self.turn_seconds = Histogram(
            "vo_turn_stage_seconds",
            "From the end of the user's speech to each stage of the reply",
            ["stage"],
            buckets=TURN_BUCKETS,
            registry=self.registry,
        )
        self.first_audio = Histogram(
            "vo_time_to_first_audio_seconds",
            "From the end of the user's speech to the reply's first audio sent to the client",
            buckets=TURN_BUCKETS,
            registry=self.registry,
        )
        self.switches = Counter(
            "vo_fallback_switches",
            "Sessions switching a role to another engine (failure, or recovery)",
            ["role", "source", "target"],
            registry=self.registry,
        )

    def _credit_metrics(self) -> None:
        self.billed = Gauge(
            "vo_host_billed_seconds",
            "Host time billed (powered) since the grant began, by idle state (credit ledger)",
            ["state"],
            registry=self.registry,
        )
        self.credits_grant = Gauge(
            "vo_credits_grant_usd", "The credit grant", registry=self.registry
        )
        self.credits_spent = Gauge(
            "vo_credits_spent_usd", "Credits spent on billed host time", registry=self.registry
        )
        self.credits_remaining = Gauge(
            "vo_credits_remaining_usd", "Credits left", registry=self.registry
        )
        self.runway = Gauge(
            "vo_credits_runway_seconds",
            "Until the credits run out at the recent burn or expire, whichever is first;"
            " +Inf while neither will happen",
            registry=self.registry,
        )

    # -- engines -----------------------------------------------------------------------------

    def load_finished(self, engine: str, seconds: float, *, ok: bool) -> None:
        self.loads.labels(engine, "ok" if ok else "error").inc()
        if ok:
            self.load_seconds.labels(engine).observe(seconds)

    def unload_finished(self, engine: str, seconds: float) -> None:
        self.unloads.labels(engine).inc()
        self.unload_seconds.labels(engine).observe(seconds)

    def set_engine_state(self, engine: str, state: str, states: list[str]) -> None:
        for candidate in states:
            self.engine_state.labels(engine, candidate).set(1 if candidate == state else 0)

    def set_engine_memory(self, engine: str, kind: str, source: str, value: int | None) -> None:
        if value is not None:
            self.engine_memory.labels(engine, kind, source).set(value)

    # -- hibernation -------------------------------------------------------------------------

    def hibernation_restored(self, state: str, since: float) -> None:
        """The state the server starts in, and since when it has been in it."""
        self._set_hibernation_state(state, since)

    def hibernation_transition(self, record: TransitionRecord) -> None:
        """A record keeper for the hibernator: each transition it applied (a worker thread)."""
        self.transitions.labels(record.source, record.target).inc()
        self._set_hibernation_state(record.target, record.at)

    def _set_hibernation_state(self, state: str, since: float) -> None:
        for candidate in ORDER:
            self.hibernation_state.labels(candidate.value).set(1 if candidate == state else 0)
        self._entered_at = since

    def set_time_in_state(self, now: float) -> None:
        if self._entered_at is not None:
            self.time_in_state.set(max(0.0, now - self._entered_at))

    def wake_finished(self, source: str, seconds: float) -> None:
        self.wake_seconds.labels(source).observe(seconds)

    # -- requests and sessions ---------------------------------------------------------------

    def request_finished(self, route: str, method: str, status: int, seconds: float | None) -> None:
        """One answered request; ``seconds`` is None for a WebSocket (its time is a session's)."""
        labels = (route, method, str(status))
        self.requests.labels(*labels).inc()
        if seconds is not None:
            self.request_seconds.labels(*labels).observe(seconds)

    def set_sessions(self, kinds: Iterable[tuple[str, str]]) -> None:
        """The open sessions, one (protocol, backend) pair each."""
        counts = dict.fromkeys(SESSION_KINDS, 0)
        for kind in kinds:
            counts[kind] = counts.get(kind, 0) + 1
        self.sessions_open.clear()  # a kind seen once ("switching") must not stay forever
        for (protocol, backend), count in counts.items():
            self.sessions_open.labels(protocol, backend).set(count)

    def turn_stage(self, stage: str, seconds: float) -> None:
        self.turn_seconds.labels(stage).observe(seconds)

    def first_audio_sent(self, seconds: float) -> None:
        self.first_audio.observe(seconds)

    def fallback_switch(self, role: str, source: str, target: str) -> None:
        self.switches.labels(role, source, target).inc()

    # -- credits -----------------------------------------------------------------------------

    def set_credits(self, summary: Mapping[str, Any]) -> None:
        """The credit ledger's summary (``Ledger.summary``): the console's credits page."""
        for state, hours in summary["hours_by_state"].items():
            self.billed.labels(state).set(hours["powered"] * HOUR_S)
        credits = summary["credits"]
        self.credits_grant.set(credits["grant_usd"])
        self.credits_spent.set(credits["spent_usd"])
        self.credits_remaining.set(credits["remaining_usd"])
        days = [d for d in (credits["runway_days"], credits["expires_in_days"]) if d is not None]
        self.runway.set(min(days) * DAY_S if days else math.inf)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class WakeTimer:
    """Times each wake: from the activity that woke the server (the wake transition's ``at``)
    until no engine is loading any more, labelled by the state woken from.

    Fed by two hooks: the hibernator's record keepers (the transitions, in a worker thread) and
    the fleet's engine states (on the loop), hence the lock. The writer applies a wake a little
    after the activity, so loads may have begun, or even ended, by then: the wake ends when the
    last of them ends (at once, 0 s, when nothing loaded since the activity). Loads that one
    request makes one after another can leave a moment with nothing loading: the wake ends
    there (a Realtime session leases its roles together, so its loads overlap). A descent
    before the wake ended drops it.
    """

    def __init__(self, observe: Callable[[str, float], None], clock: Callable[[], float]) -> None:
        self._observe = observe
        self._clock = clock
        self._lock = threading.Lock()
        self._loading: set[str] = set()
        self._quiet_since = clock()  # when the last load in flight ended
        self._wake: tuple[str, float] | None = None  # (state woken from, when)

    def transition(self, record: TransitionRecord) -> None:
        with self._lock:
            woke = record.target == IdleState.ACTIVE and record.source != IdleState.ACTIVE
            self._wake = (record.source, record.at) if woke else None
            if self._wake is not None and not self._loading:
                self._finish(max(self._quiet_since, record.at))

    def engine_state(self, engine: str, state: str) -> None:
        with self._lock:
            if state == EngineState.LOADING:
                self._loading.add(engine)
                return
            if engine not in self._loading:
                return
            self._loading.discard(engine)
            if not self._loading:
                self._quiet_since = self._clock()
                if self._wake is not None:
                    self._finish(self._quiet_since)

    def _finish(self, end: float) -> None:
        assert self._wake is not None
        source, at = self._wake
        self._wake = None
        self._observe(source, max(0.0, end - at))
