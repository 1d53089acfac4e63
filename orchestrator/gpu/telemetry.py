"""GPU telemetry behind one small protocol, and simulated GPUs.

    GpuBackend.read() -> list[GpuTelemetry]   every GPU: memory, utilization, power, heat, pids
      NvmlGpu        the real GPUs through nvidia-ml-py; no driver means [] ("no GPU")
      SimulatedGpu   a configured total with scriptable usage, for tests and `plan`
      SimulatedGpus  several of them as one host (``[gpu] simulated_gpus = "2x-t4-16gb"``)

``attribute()`` splits a GPU's used memory between our engines (by pid) and strangers, and
``wait_for_vram_recovery()`` polls, bounded, until an unload's memory is really free again.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from orchestrator.config import ConfigError, GpuConfig
from orchestrator.gpu.gpu_types import parse_gpu_set
from orchestrator.gpu.placement import MIB, GpuView, gib
from services import nvml
from services.errors import EngineError
from services.nvml import GpuProcess, GpuTelemetry


class GpuBackend(Protocol):
    """Where telemetry comes from. ``read`` is quick (NVML answers in microseconds)."""

    def read(self) -> list[GpuTelemetry]: ...


class NvmlGpu:
    """The host's real GPUs; an empty list when there is no NVIDIA driver."""

    def read(self) -> list[GpuTelemetry]:
        return nvml.read_telemetry()


@dataclass
class SimulatedGpu:
    """One GPU of ``total_bytes``. Script it: processes by pid, memory nobody owns
    (``base_used_bytes``), and releases that show as free only after some polls, as a real
    driver lags behind an unload."""

    total_bytes: int
    name: str = "simulated GPU"
    index: int = 0
    base_used_bytes: int = 0
    utilization_pct: float | None = 0.0
    power_w: float | None = 30.0
    temperature_c: float | None = 40.0
    polls: int = 0
    _processes: dict[int, int] = field(default_factory=dict)
    _lagging: list[list[int]] = field(default_factory=list)  # [bytes, polls still counted]

    def set_process(self, pid: int, used_bytes: int) -> None:
        self._processes[pid] = used_bytes

    def release(self, pid: int, *, after_polls: int = 0) -> None:
        """The process lets go of its memory; the next ``after_polls`` reads still count it."""
        used = self._processes.pop(pid, 0)
        if after_polls > 0 and used:
            self._lagging.append([used, after_polls])

    def read(self) -> list[GpuTelemetry]:
        self.polls += 1
        self._lagging = [item for item in self._lagging if item[1] > 0]
        used = self.base_used_bytes + sum(self._processes.values())
        used += sum(item[0] for item in self._lagging)
        for item in self._lagging:
            item[1] -= 1
        used = min(used, self.total_bytes)
        processes = tuple(GpuProcess(pid, size) for pid, size in sorted(self._processes.items()))
        return [
            GpuTelemetry(
                index=self.index,
                name=self.name,
                total_bytes=self.total_bytes,
                used_bytes=used,
                free_bytes=self.total_bytes - used,
                utilization_pct=self.utilization_pct,
                power_w=self.power_w,
                temperature_c=self.temperature_c,
                processes=processes,
            )
        ]


@dataclass
class SimulatedGpus:
    """Several simulated GPUs on one host; ``gpus[i]`` is ``cuda:i`` and reads as index ``i``."""

    gpus: list[SimulatedGpu]

    def __post_init__(self) -> None:
        for index, gpu in enumerate(self.gpus):
            gpu.index = index

    @property
    def polls(self) -> int:
        return max((gpu.polls for gpu in self.gpus), default=0)

    def read(self) -> list[GpuTelemetry]:
        return [reading for gpu in self.gpus for reading in gpu.read()]


def backend_for(config: GpuConfig) -> GpuBackend:
    if config.backend != "simulated":
        return NvmlGpu()
    if config.simulated_gpus is None:
        return SimulatedGpu(int(config.simulated_total_mb * MIB))
    try:
        gpu_set = parse_gpu_set(config.simulated_gpus)
    except ValueError as exc:
        raise ConfigError(f"gpu.simulated_gpus: {exc}") from None
    return SimulatedGpus(
        [SimulatedGpu(t.memory_bytes, name=f"simulated {t.name}") for t in gpu_set.types]
    )


# -- attribution -------------------------------------------------------------------------------


@dataclass(frozen=True)
class VramAttribution:
    """Who holds a GPU's memory. ``unattributed`` is used memory no listed process accounts for
    (driver, contexts, processes hidden from a container)."""

    gpu_index: int
    ours: dict[str, int]
    stranger_bytes: int
    unattributed_bytes: int

    @property
    def ours_bytes(self) -> int:
        return sum(self.ours.values())


def attribute(sample: GpuTelemetry, owners: Mapping[int, str]) -> VramAttribution:
    """Split used memory by pid: ``owners`` maps our pids to a label (an engine, or several)."""
    ours: dict[str, int] = {}
    strangers = 0
    for proc in sample.processes:
        used = proc.used_bytes or 0
        if proc.pid in owners:
            ours[owners[proc.pid]] = ours.get(owners[proc.pid], 0) + used
        else:
            strangers += used
    listed = sum(proc.used_bytes or 0 for proc in sample.processes)
    return VramAttribution(sample.index, ours, strangers, max(sample.used_bytes - listed, 0))


def gpu_views(samples: Sequence[GpuTelemetry], owners: Mapping[int, str]) -> list[GpuView]:
    """The planner's view: strangers are the listed processes that are not ours."""
    return [
        GpuView(s.index, s.total_bytes, s.free_bytes, attribute(s, owners).stranger_bytes)
        for s in samples
    ]


# -- waiting for an unload to show -------------------------------------------------------------


class VramNotRecovered(EngineError):
    """Free VRAM did not come back in time after an unload: the next load must not start.

    An engine error, so the load that waited on it fails like any refused load (the fleet
    reports it, a fallback chain moves on and probes again later)."""

    code = "vram_not_recovered"
    transient = True


async def wait_for_vram_recovery(
    backend: GpuBackend,
    needed_free_bytes: int,
    *,
    gpu_index: int = 0,
    timeout_s: float = 30.0,
    poll_s: float = 0.5,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Poll until GPU ``gpu_index`` shows ``needed_free_bytes`` free; return what it shows.

    Bounded twice over: by ``timeout_s`` on ``clock`` and by the number of polls that fit in it,
    so a fake clock that never moves cannot make it spin forever.
    """
    started = clock()
    max_polls = max(1, math.ceil(timeout_s / poll_s)) + 1
    free = 0
    for poll in range(1, max_polls + 1):
        free = _free_bytes(backend.read(), gpu_index)
        if free >= needed_free_bytes:
            return free
        if poll == max_polls or clock() - started >= timeout_s:
            break
        await sleep(poll_s)
    raise VramNotRecovered(
        f"GPU {gpu_index}: free VRAM is {gib(free)}, the load needs {gib(needed_free_bytes)}"
        f" free (short by {gib(needed_free_bytes - free)}); still short after {timeout_s:g} s"
        f" and {poll} polls; something else may be holding memory"
    )


def _free_bytes(samples: Sequence[GpuTelemetry], gpu_index: int) -> int:
    for sample in samples:
        if sample.index == gpu_index:
            return sample.free_bytes
    raise VramNotRecovered(f"GPU {gpu_index} is not there any more")
