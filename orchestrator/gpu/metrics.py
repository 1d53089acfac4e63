"""Prometheus gauges for the GPU and the VRAM planner, on a registry the caller owns.

    vo_gpu_memory_bytes{gpu,kind}         total | used | free | ours | strangers | unattributed
    vo_gpu_utilization_percent{gpu}       busy time of the last sample period
    vo_gpu_power_watts{gpu}
    vo_gpu_temperature_celsius{gpu}
    vo_vram_reserve_bytes                 what the planner never fills
    vo_vram_engine_bytes{engine,source}   the planner's figure per engine: estimated | measured

The adapters' own view of memory stays in ``vo_engine_memory_bytes`` (orchestrator.core.metrics);
these are the planner's figures, so the two can be compared. A reading a GPU does not support
is left out rather than reported as zero.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence

from prometheus_client import CollectorRegistry, Gauge

from orchestrator.gpu.telemetry import attribute
from services.nvml import GpuTelemetry


class GpuGauges:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.memory = Gauge(
            "vo_gpu_memory_bytes",
            "GPU memory by kind: total, used, free, ours, strangers, unattributed",
            ["gpu", "kind"],
            registry=registry,
        )
        self.utilization = Gauge(
            "vo_gpu_utilization_percent", "GPU busy percent", ["gpu"], registry=registry
        )
        self.power = Gauge("vo_gpu_power_watts", "GPU power draw", ["gpu"], registry=registry)
        self.temperature = Gauge(
            "vo_gpu_temperature_celsius", "GPU temperature", ["gpu"], registry=registry
        )
        self.reserve = Gauge(
            "vo_vram_reserve_bytes", "VRAM the planner keeps free", registry=registry
        )
        self.engine_vram = Gauge(
            "vo_vram_engine_bytes",
            "The planner's VRAM figure per engine, by source (estimated|measured)",
            ["engine", "source"],
            registry=registry,
        )

    def observe(self, samples: Sequence[GpuTelemetry], owners: Mapping[int, str]) -> None:
        """Record one sampler reading; ``owners`` maps our pids to engine labels."""
        for sample in samples:
            gpu = str(sample.index)
            split = attribute(sample, owners)
            kinds = {
                "total": sample.total_bytes,
                "used": sample.used_bytes,
                "free": sample.free_bytes,
                "ours": split.ours_bytes,
                "strangers": split.stranger_bytes,
                "unattributed": split.unattributed_bytes,
            }
            for kind, size in kinds.items():
                self.memory.labels(gpu, kind).set(size)
            readings: tuple[tuple[Gauge, float | None], ...] = (
                (self.utilization, sample.utilization_pct),
                (self.power, sample.power_w),
                (self.temperature, sample.temperature_c),
            )
            for gauge, value in readings:
                if value is None:
                    _forget(gauge, gpu)
                else:
                    gauge.labels(gpu).set(value)

    def set_reserve(self, reserve_bytes: int) -> None:
        self.reserve.set(reserve_bytes)

    def set_engine_vram(self, engine: str, *, estimated: int | None, measured: int | None) -> None:
        for source, value in (("estimated", estimated), ("measured", measured)):
            if value is None:
                _forget(self.engine_vram, engine, source)
            else:
                self.engine_vram.labels(engine, source).set(value)


def _forget(gauge: Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        gauge.remove(*labels)
