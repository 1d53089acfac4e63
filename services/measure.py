"""Measure what a load costs and what an unload gives back, in this process.

RSS comes from psutil, VRAM from NVML (None without a GPU). After an unload, glibc is asked to
return freed heap pages to the OS (``malloc_trim``) so that the measured RSS reflects the release
instead of the allocator's caching.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
from dataclasses import dataclass

import psutil

from services import nvml

_libc_name = ctypes.util.find_library("c")
_libc = ctypes.CDLL(_libc_name) if _libc_name else None


@dataclass(frozen=True)
class MemorySample:
    rss_bytes: int
    vram_bytes: int | None


def sample() -> MemorySample:
    pid = os.getpid()
    return MemorySample(
        rss_bytes=psutil.Process(pid).memory_info().rss,
        vram_bytes=nvml.process_vram_bytes(pid),
    )


def release_freed_memory() -> None:
    """Collect garbage and hand freed heap back to the OS where the C library allows it."""
    gc.collect()
    if _libc is not None and hasattr(_libc, "malloc_trim"):
        _libc.malloc_trim(0)


def vram_delta(before: MemorySample, after: MemorySample) -> int | None:
    if before.vram_bytes is None or after.vram_bytes is None:
        return None
    return after.vram_bytes - before.vram_bytes
