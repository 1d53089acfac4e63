"""Thin, failure-tolerant access to NVIDIA's management library (nvidia-ml-py).

Without a GPU or driver ``nvmlInit()`` raises; every function here then answers "no GPU"
(empty list or None) instead of raising, so callers need no special case for CPU machines.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

_lock = threading.Lock()
_available: bool | None = None


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    total_bytes: int
    used_bytes: int
    free_bytes: int


def _init() -> bool:
    global _available
    with _lock:
        if _available is None:
            try:
                import pynvml

                pynvml.nvmlInit()
                _available = True
            except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ImportError
                log.info("NVML not available (%s): treating this host as having no GPU", exc)
                _available = False
        return _available


def list_gpus() -> list[GpuInfo]:
    if not _init():
        return []
    import pynvml

    gpus: list[GpuInfo] = []
    for index in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        name = pynvml.nvmlDeviceGetName(handle)
        mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
        gpus.append(
            GpuInfo(
                index=index,
                name=name.decode() if isinstance(name, bytes) else str(name),
                total_bytes=int(mem.total),
                used_bytes=int(mem.used),
                free_bytes=int(mem.free),
            )
        )
    return gpus


def process_vram_bytes(pid: int) -> int | None:
    """VRAM used by one process over all GPUs, or None when there is no GPU to ask."""
    if not _init():
        return None
    import pynvml

    total = 0
    for index in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == pid and proc.usedGpuMemory is not None:
                total += int(proc.usedGpuMemory)
    return total


@dataclass(frozen=True)
class GpuProcess:
    """One process using a GPU; ``used_bytes`` is None where the driver will not say."""

    pid: int
    used_bytes: int | None


@dataclass(frozen=True)
class GpuTelemetry:
    """One GPU's memory, load and health; a reading the GPU does not support is None."""

    index: int
    name: str
    total_bytes: int
    used_bytes: int
    free_bytes: int
    utilization_pct: float | None = None
    power_w: float | None = None
    temperature_c: float | None = None
    processes: tuple[GpuProcess, ...] = ()


def read_telemetry() -> list[GpuTelemetry]:
    """Every GPU's telemetry, or an empty list when there is no GPU to ask.

    Each NVML query takes microseconds; a query a GPU does not support (power on some boards,
    process lists inside some containers) leaves its field empty instead of failing the read.
    """
    if not _init():
        return []
    import pynvml

    return [_telemetry(info, pynvml.nvmlDeviceGetHandleByIndex(info.index)) for info in list_gpus()]


def _telemetry(info: GpuInfo, handle: object) -> GpuTelemetry:
    import pynvml

    def utilization() -> float:
        return float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)

    def power() -> float:
        return float(pynvml.nvmlDeviceGetPowerUsage(handle)) / 1000.0  # milliwatts

    def temperature() -> float:
        return float(pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU))

    return GpuTelemetry(
        index=info.index,
        name=info.name,
        total_bytes=info.total_bytes,
        used_bytes=info.used_bytes,
        free_bytes=info.free_bytes,
        utilization_pct=_optional(utilization),
        power_w=_optional(power),
        temperature_c=_optional(temperature),
        processes=_processes(handle),
    )


def _optional(query: Callable[[], float]) -> float | None:
    import pynvml

    try:
        return query()
    except pynvml.NVMLError:
        return None


def _processes(handle: object) -> tuple[GpuProcess, ...]:
    """Compute and graphics processes, one entry per pid (a pid may appear in both lists)."""
    import pynvml

    found: dict[int, int | None] = {}
    for lister in (
        pynvml.nvmlDeviceGetComputeRunningProcesses,
        pynvml.nvmlDeviceGetGraphicsRunningProcesses,
    ):
        try:
            procs = lister(handle)
        except pynvml.NVMLError:
            continue
        for proc in procs:
            used = None if proc.usedGpuMemory is None else int(proc.usedGpuMemory)
            previous = found.get(proc.pid)
            found[proc.pid] = used if previous is None else max(previous, used or 0)
    return tuple(GpuProcess(pid, used) for pid, used in sorted(found.items()))
