"""What a supervised server's process tree holds, and whether its program is there at all.

Managed engines report the memory of the whole tree (Ollama's runners are children of
``ollama serve``), and check the program before starting it, so that a missing install is a
clear ``missing`` state instead of a crash loop.
"""

from __future__ import annotations

import os
import shutil

import psutil

from services import nvml


def tree_memory(pid: int) -> tuple[int | None, int | None]:
    """(RAM, VRAM) in bytes held by ``pid`` and its descendants; None where unknown."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
        ram = sum(p.memory_info().rss for p in tree)
    except psutil.Error:
        return None, None
    vrams = [nvml.process_vram_bytes(p.pid) for p in tree]
    known = [v for v in vrams if v is not None]
    return ram, sum(known) if known else None


def program_problem(program: str) -> str | None:
    """Why ``program`` cannot be started (a path, or a name looked up on PATH); None if it can."""
    if os.sep in program:
        return None if os.access(program, os.X_OK) else "not found or not executable"
    return None if shutil.which(program) is not None else "not found on PATH"
