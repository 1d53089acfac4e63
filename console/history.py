"""The overview's charts: GPU memory and utilization, and time to first audio, over recent hours.

Nothing in the runtime keeps a history (the GPU sampler holds its latest reading, sessions their
last turns, Prometheus histograms their totals), so the console keeps a bounded one:
one point per ``step_s`` (a minute) for ``keep_s`` (six hours), also saved to the state database
(``console.history_store``) so that a restart keeps it. A step adds a
point only when something new arrived: a fresh GPU reading (the sampler counts its readings), or
turns finished since the last step. Latency quantiles come from the turn histogram's buckets
(``vo_turn_stage_seconds{stage="first_audio_s"}``) the way Prometheus' ``histogram_quantile``
does it: exact to a bucket, interpolated inside it, and lossless however many sessions come and
go between two steps.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client import Histogram

from services.nvml import GpuTelemetry

STEP_S = 60.0
KEEP_S = 6 * 3600.0
STAGE = "first_audio_s"
Buckets = list[tuple[float, float]]  # (upper bound, cumulative count), +inf last


@dataclass(frozen=True)
class Point:
    """One step of the charts; a field is None when that step had nothing new to say."""

    at: float
    vram_used_bytes: int | None = None
    vram_total_bytes: int | None = None
    utilization_pct: float | None = None
    turns: int = 0
    p50_s: float | None = None
    p99_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def quantile(q: float, buckets: Buckets) -> float | None:
    """The ``q`` quantile of the observations counted in cumulative ``buckets``; None if none."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank and count > below:
            if math.isinf(upper):
                return lower  # past the last finite bound: say the bound, as Prometheus does
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


def histogram_buckets(histogram: Histogram, stage: str = STAGE) -> Buckets:
    """The cumulative bucket counts of one ``stage`` of the turn histogram (all zero if unseen)."""
    found: Buckets = []
    for family in histogram.collect():
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels.get("stage") == stage:
                found.append((float(sample.labels["le"]), sample.value))
    return sorted(found)


def _minus(now: Buckets, before: Buckets) -> Buckets:
    """The observations counted in ``now`` since ``before`` (same bounds, or ``before`` empty)."""
    if not before or [b for b, _ in before] != [b for b, _ in now]:
        return now
    return [(bound, count - old) for (bound, count), (_, old) in zip(now, before, strict=True)]


class History:
    """The bounded series the overview charts draw, fed by ``step()`` from the console's task."""

    def __init__(self, *, step_s: float = STEP_S, keep_s: float = KEEP_S) -> None:
        self.step_s = step_s
        self.keep_s = keep_s
        self.points: deque[Point] = deque(maxlen=max(1, int(keep_s // step_s)))
        self.listeners: list[Callable[[Point], None]] = []
        self._samples_seen = 0
        self._buckets: Buckets = []

    def step(
        self, at: float, samples: int, gpus: Sequence[GpuTelemetry], buckets: Buckets
    ) -> Point | None:
        """Add a point at ``at`` if a GPU reading (count ``samples``) or a turn is new."""
        fresh_gpu = samples != self._samples_seen and bool(gpus)
        self._samples_seen = samples
        recent = _minus(buckets, self._buckets)
        self._buckets = buckets
        turns = int(recent[-1][1]) if recent else 0
        if not fresh_gpu and turns == 0:
            return None
        gpu: dict[str, Any] = {}
        if fresh_gpu:
            gpu = {
                "vram_used_bytes": sum(g.used_bytes for g in gpus),
                "vram_total_bytes": sum(g.total_bytes for g in gpus),
                "utilization_pct": _mean([g.utilization_pct for g in gpus]),
            }
        latency: dict[str, Any] = {}
        if turns:
            latency = {"p50_s": _ms(quantile(0.5, recent)), "p99_s": _ms(quantile(0.99, recent))}
        point = Point(at=at, turns=turns, **gpu, **latency)
        self.add(point)
        return point

    def add(self, point: Point) -> None:
        self.points.append(point)
        for listener in list(self.listeners):
            listener(point)

    def to_list(self) -> list[dict[str, Any]]:
        return [point.to_dict() for point in self.points]


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known) / len(known), 1) if known else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)
