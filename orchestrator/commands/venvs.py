"""What the install commands share: a step that runs a program, and a virtual environment.

Each step prints what it does and fails with one clear line (``CommandError``) carrying the
last lines of the program's output, never a traceback.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from orchestrator.commands import CommandError


def run_step(command: Sequence[str], what: str, *, timeout_s: float = 3600) -> str:
    """Run ``command``; its output, or CommandError naming ``what`` with the output's tail."""
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CommandError(f"{what}: {exc}") from exc
    if done.returncode != 0:
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-3:])
        raise CommandError(f"{what} failed ({done.returncode}): {tail}")
    return done.stdout


def ensure_venv(python: Path, interpreter: str) -> Path:
    """The environment ``python`` belongs to, created with ``interpreter`` unless it exists."""
    venv = python.parent.parent
    if not python.is_file():
        print(f"creating the environment {venv} with {interpreter}")
        run_step([interpreter, "-m", "venv", str(venv)], "creating the environment")
    return venv


def pip_install(python: Path, requirement: str, pip_args: Sequence[str]) -> None:
    command = [str(python), "-m", "pip", "install", "--disable-pip-version-check", *pip_args]
    run_step([*command, requirement], "pip install")
