"""The planner's vocabulary: what it knows about a GPU and an engine, and what a placement is.

Plain frozen data, so that the fleet, the ``plan`` command and tests can all describe the world
the same way and the planner (``orchestrator.gpu.planner``) stays a pure function of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

GIB = 2**30
MIB = 2**20


def gib(value: int) -> str:
    """Bytes as GiB with two decimals: how the planner's messages show memory."""
    return f"{value / GIB:.2f} GiB"


class RunsOn(StrEnum):
    """Where a model may run at all (from the catalog)."""

    GPU = "gpu"
    GPU_OR_CPU = "gpu_or_cpu"
    CPU = "cpu"


class Device(StrEnum):
    GPU = "gpu"
    CPU = "cpu"


@dataclass(frozen=True)
class GpuView:
    """One GPU as the planner sees it. ``stranger_bytes`` is what processes not ours hold."""

    index: int
    total_bytes: int
    free_bytes: int
    stranger_bytes: int = 0


@dataclass(frozen=True)
class EngineView:
    """One engine as the planner sees it: its size (measured, else estimated) and its state.

    ``prefers`` is the operator's device; ``runs_on`` what the model allows. ``loading`` means a
    load is in flight (counted against the GPU, not yet visible in its free memory).
    ``gpu_pin`` is the GPU the operator named (``device = "cuda:N"``): that GPU or nothing, never
    another GPU and never the CPU instead; None lets the planner choose.
    """

    name: str
    priority: int
    vram_bytes: int
    runs_on: RunsOn = RunsOn.GPU_OR_CPU
    prefers: Device = Device.GPU
    loaded_on: Device | None = None
    gpu_index: int = 0
    loading: bool = False
    leased: bool = False
    pinned: bool = False
    gpu_pin: int | None = None

    @property
    def value(self) -> int:
        return self.priority + 1

    @property
    def wants_gpu(self) -> bool:
        if self.runs_on is RunsOn.GPU:
            return True
        return self.runs_on is RunsOn.GPU_OR_CPU and self.prefers is Device.GPU

    @property
    def runs_on_gpu(self) -> bool:
        return self.runs_on is not RunsOn.CPU

    @property
    def cpu_ok(self) -> bool:
        return self.runs_on is not RunsOn.GPU and self.gpu_pin is None

    def allowed_on(self, index: int) -> bool:
        """May the planner put this engine on GPU ``index``?"""
        return self.gpu_pin is None or self.gpu_pin == index

    @property
    def held(self) -> bool:
        """Never evicted, never moved: in use, pinned by the operator, or mid-load."""
        return self.leased or self.pinned or self.loading

    def on_gpu(self, index: int) -> bool:
        return self.loaded_on is Device.GPU and self.gpu_index == index


@dataclass(frozen=True)
class DevicePacking:
    """What one GPU of a packing holds."""

    index: int
    engines: tuple[str, ...]
    used_bytes: int
    budget_bytes: int
    value: int

    @property
    def device(self) -> str:
        return f"cuda:{self.index}"

    @property
    def left_bytes(self) -> int:
        return self.budget_bytes - self.used_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "engines": list(self.engines),
            "used_bytes": self.used_bytes,
            "budget_bytes": self.budget_bytes,
            "left_bytes": self.left_bytes,
            "value": self.value,
        }


@dataclass(frozen=True)
class Packing:
    """One placement of every engine: on a GPU, on the CPU, or off (no room where it may run).

    ``gpu``, ``used_bytes``, ``budget_bytes`` and ``value`` add up every GPU; ``devices`` says
    which GPU holds what (one entry per GPU planned for, in index order)."""

    gpu: tuple[str, ...]
    cpu: tuple[str, ...]
    off: tuple[str, ...]
    used_bytes: int
    budget_bytes: int
    value: int
    devices: tuple[DevicePacking, ...] = ()

    @property
    def left_bytes(self) -> int:
        return self.budget_bytes - self.used_bytes

    def device_of(self, name: str) -> int | None:
        """The GPU index ``name`` is placed on; None when it is not on a GPU."""
        for device in self.devices:
            if name in device.engines:
                return device.index
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpu": list(self.gpu),
            "cpu": list(self.cpu),
            "off": list(self.off),
            "used_bytes": self.used_bytes,
            "budget_bytes": self.budget_bytes,
            "left_bytes": self.left_bytes,
            "value": self.value,
            "devices": [device.to_dict() for device in self.devices],
        }


def available_bytes(gpu: GpuView, engines: Sequence[EngineView], reserve_bytes: int) -> int:
    """Room for one more engine now. Loads in flight are not yet in ``free``, so they are taken
    off it; the total-less-committed bound guards against a stale or optimistic ``free``."""
    ours = [e for e in engines if e.on_gpu(gpu.index)]
    committed = sum(e.vram_bytes for e in ours)
    pending = sum(e.vram_bytes for e in ours if e.loading)
    by_free = gpu.free_bytes - pending
    by_total = gpu.total_bytes - gpu.stranger_bytes - committed
    return min(by_free, by_total) - reserve_bytes


def budget_bytes(gpu: GpuView, reserve_bytes: int) -> int:
    """What our engines may use in all: the GPU less other processes and the reserve."""
    return gpu.total_bytes - gpu.stranger_bytes - reserve_bytes


def vram_budget(gpu: GpuView, engines: Sequence[EngineView], reserve_bytes: int) -> dict[str, int]:
    """The numbers a health summary shows for one GPU."""
    ours = sum(e.vram_bytes for e in engines if e.on_gpu(gpu.index))
    return {
        "gpu": gpu.index,
        "total_bytes": gpu.total_bytes,
        "free_bytes": gpu.free_bytes,
        "reserve_bytes": reserve_bytes,
        "stranger_bytes": gpu.stranger_bytes,
        "ours_bytes": ours,
        "available_bytes": max(available_bytes(gpu, engines, reserve_bytes), 0),
    }


def split(
    engines: Sequence[EngineView], gpus: Sequence[GpuView]
) -> tuple[dict[int, list[EngineView]], list[EngineView]]:
    """(held engines per GPU: they stay there, candidates for a GPU). Held engines stay where
    they are; engines pinned to a GPU that is not there are no candidates."""
    forced = {g.index: [e for e in engines if e.held and e.on_gpu(g.index)] for g in gpus}
    movable = [e for e in engines if not (e.held and e.loaded_on is not None)]
    indices = {g.index for g in gpus}
    candidates = [e for e in movable if e.wants_gpu and (e.gpu_pin is None or e.gpu_pin in indices)]
    return forced, candidates


def placement(
    engines: Sequence[EngineView],
    assigned: Mapping[str, int],
    gpus: Sequence[GpuView],
    reserve_bytes: int,
) -> Packing:
    """Put each engine of ``assigned`` on its GPU and everything else on the CPU where allowed,
    else off."""
    devices = []
    for g in gpus:
        here = [e for e in engines if assigned.get(e.name) == g.index]
        devices.append(
            DevicePacking(
                index=g.index,
                engines=tuple(e.name for e in here),
                used_bytes=sum(e.vram_bytes for e in here),
                budget_bytes=budget_bytes(g, reserve_bytes),
                value=sum(e.value for e in here),
            )
        )
    others = [e for e in engines if e.name not in assigned]
    return Packing(
        gpu=tuple(e.name for e in engines if e.name in assigned),
        cpu=tuple(e.name for e in others if e.cpu_ok),
        off=tuple(e.name for e in others if not e.cpu_ok),
        used_bytes=sum(d.used_bytes for d in devices),
        budget_bytes=sum(d.budget_bytes for d in devices),
        value=sum(d.value for d in devices),
        devices=tuple(devices),
    )
