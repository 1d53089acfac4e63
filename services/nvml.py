"""Thin, failure-tolerant access to NVIDIA's management library (nvidia-ml-py).

Without a GPU or driver ``nvmlInit()`` raises; every function here then answers "no GPU"
(empty list or None) instead of raising, so callers need no special case for CPU machines.
"""

from __future__ import annotations

import logging
import threading
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
