"""The process keeps glibc to a few heap arenas, so worker threads do not fragment one each.

Each engine call runs in a worker thread; by default glibc gives a thread that finds its arena
busy an arena of its own (up to eight per core) and each fragments apart, which a long session's
RSS showed (bench/soak.py). A fresh interpreter configures the allocator as the in-process
engines do, then threads allocate at once; glibc's own report (``malloc_info``) counts the
arenas. Linux with glibc only.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services import measure

ROOT = Path(__file__).resolve().parent.parent
PROBE = """
import ctypes, os, sys, tempfile, threading
from services import measure
if sys.argv[1] == "configured":
    measure.keep_large_allocations_returnable()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.fopen.restype = ctypes.c_void_p
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
start = threading.Barrier(8)
def work():
    start.wait()
    for _ in range(2000):
        libc.free(libc.malloc(4096))
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
with tempfile.NamedTemporaryFile(suffix=".xml", delete=False) as out:
    path = out.name
f = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, f)
libc.fclose(f)
with open(path) as report:
    print(report.read().count("<heap nr="))
os.unlink(path)
"""


def arenas(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return int(done.stdout.strip())


@pytest.mark.skipif(
    measure._libc is None or not hasattr(measure._libc, "malloc_info"), reason="glibc only"
)
def test_threads_share_a_few_heap_arenas() -> None:
    assert arenas("configured") <= measure.HEAP_ARENAS
