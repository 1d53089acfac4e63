"""The host's lifecycle as the gateway sees it: states, the moves between them, and the ETA.

    STOPPED -> STARTING -> BOOTING -> READY -> DRAINING -> STOPPING -> STOPPED
                  |           |         |         |
                  +-----------+---------+---------+--> FAILED (reason, backoff) -> STARTING

STARTING: the provider was asked to start the machine. BOOTING: the machine runs, the
orchestrator on it does not answer ``/health/ready`` yet. READY: it does. DRAINING: nobody used
it for ``stop_after_s``; a request sends it back to READY, else it is stopped after ``drain_s``.
Any state may fall to STOPPED when the provider says the machine stopped (preempted, killed) and
to FAILED when a start or boot fails. Pure: the controller (``controller.py``) is its one writer.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from orchestrator.gateway.store import HostTransition
from services.errors import VoiceOrchestratorError


class HostState(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    BOOTING = "booting"
    READY = "ready"
    DRAINING = "draining"
    STOPPING = "stopping"
    FAILED = "failed"


S = HostState
MOVES: dict[HostState, frozenset[HostState]] = {
    S.STOPPED: frozenset({S.STARTING, S.BOOTING, S.READY, S.STOPPING, S.FAILED}),
    S.STARTING: frozenset({S.BOOTING, S.READY, S.FAILED, S.STOPPED, S.STOPPING}),
    S.BOOTING: frozenset({S.READY, S.FAILED, S.STOPPED, S.STOPPING}),
    S.READY: frozenset({S.DRAINING, S.BOOTING, S.STOPPING, S.STOPPED, S.FAILED}),
    S.DRAINING: frozenset({S.READY, S.STOPPING, S.STOPPED, S.FAILED}),
    S.STOPPING: frozenset({S.STOPPED, S.FAILED}),
    S.FAILED: frozenset({S.STARTING, S.BOOTING, S.READY, S.STOPPING, S.STOPPED}),
}
"""Where each state may go. STOPPED may jump to BOOTING or READY when the provider or the host
say so (someone started it by hand); READY falls back to BOOTING when the host stops answering
while its machine still runs."""

UP = frozenset({S.READY, S.DRAINING})
"""The states in which requests are passed through."""

WAKING = frozenset({S.STARTING, S.BOOTING})


class IllegalMove(VoiceOrchestratorError, ValueError):
    """A transition the table does not allow: a bug in the controller, never the client's."""


def check_move(source: HostState, target: HostState) -> None:
    if target is not source and target not in MOVES[source]:
        raise IllegalMove(f"host cannot go from {source} to {target}")


@dataclass(frozen=True)
class HostSnapshot:
    """What the app and the operator are told: ``GET /v1/host`` and each ``host`` event."""

    state: HostState
    since: float  # wall-clock time of the last transition
    eta_s: float | None  # seconds until ready (0 when up; None when stopped or failed)
    progress: float  # 0..1: time spent waking over the expected start-to-ready time
    instance: str = ""
    last_failure: str | None = None
    retry_at: float | None = None  # after a failure, when the next start may be tried
    cause: str = ""  # why the last transition happened

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["state"] = self.state.value
        return body


def expected_start_s(durations: Sequence[float], default_s: float) -> tuple[float, float]:
    """(p50, p95) of past start-to-ready durations; ``default_s`` for both before any."""
    if not durations:
        return default_s, default_s
    if len(durations) == 1:
        return durations[0], durations[0]
    ordered = sorted(durations)
    p50 = statistics.median(ordered)
    cuts = statistics.quantiles(ordered, n=20, method="inclusive")
    return p50, cuts[-1]


def eta(state: HostState, waking_for_s: float, p50_s: float) -> tuple[float | None, float]:
    """(seconds until ready, progress 0..1) for a host ``waking_for_s`` into its start.

    Past the median the ETA does not go below a few seconds: a late host is "almost there",
    never "ready 0 s ago"."""
    if state in UP:
        return 0.0, 1.0
    if state is S.STOPPING:
        return p50_s + 5.0, 0.0  # it must stop before it can start again
    if state not in WAKING:
        return None, 0.0
    remaining = max(p50_s - waking_for_s, min(5.0, p50_s))
    total = waking_for_s + remaining
    progress = min(0.99, waking_for_s / total) if total > 0 else 0.0
    return remaining, progress


def start_asked_at(history: list[HostTransition]) -> float | None:
    """When the start now under way was asked, if the history shows one (the gateway died
    while the host was starting or booting)."""
    for record in reversed(history):
        if record.target == S.STARTING.value:
            return record.at
        if record.target != S.BOOTING.value:
            return None
    return None
