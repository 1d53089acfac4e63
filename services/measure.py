"""Measure what a load costs and what an unload gives back, in this process.

RSS comes from psutil, VRAM from NVML (None without a GPU). After an unload, glibc is asked to
return freed heap pages to the OS (``malloc_trim``) so that the measured RSS reflects the release
instead of the allocator's caching. ``keep_large_allocations_returnable`` pins glibc's mmap
threshold: by default it grows after each large free, so the next model's weight tensors land
in heap arenas that are not handed back when the model is unloaded.
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


M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1024 * 1024
M_ARENA_MAX = -8
HEAP_ARENAS = 2
_allocator_configured = False


def keep_large_allocations_returnable() -> None:
    """Serve allocations of 1 MiB and more with mmap, so freeing a model returns its memory;
    and keep glibc to ``HEAP_ARENAS`` heap arenas. By default every thread that allocates
    while another holds its arena gets one of its own (up to eight per core), each fragmenting
    apart: in a long session the freed holes of the engine calls' worker threads added some
    30 MB of RSS that no ``malloc_trim`` could give back (bench/soak.py)."""
    global _allocator_configured
    if _allocator_configured or _libc is None or not hasattr(_libc, "mallopt"):
        return
    _libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    _libc.mallopt(M_ARENA_MAX, HEAP_ARENAS)
    _allocator_configured = True


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
