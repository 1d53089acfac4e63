"""A small virtual environment with the sphn that PersonaPlex's server pins, for
tests/test_personaplex_opus.py.

PersonaPlex (NVIDIA/personaplex ``moshi/pyproject.toml``) pins ``sphn>=0.1.4,<0.2`` and
``numpy<2.2``; we write and read Ogg Opus with sphn 0.2. The two cannot share a venv, so the
server's side of the test runs in this one: made once into a cache directory
(``$VO_SPHN01_VENV``, default ``$XDG_CACHE_HOME/voice-orchestrator/sphn-0.1``) from PyPI,
binary wheels only (a source build would need Rust and minutes). Remade when ``REQUIREMENTS``
change. A failure is remembered for a day, so an offline machine does not pay for the attempt
on every test run; ``python -m tests.opus_venv`` always tries. CI runs that before the tests
(.ci/run), so there the test runs instead of skipping.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REQUIREMENTS = ("sphn>=0.1.4,<0.2", "numpy<2.2")
INSTALL_TIMEOUT_S = 600.0
RETRY_AFTER_S = 86400.0


class Unavailable(RuntimeError):
    """The venv could not be made (no network, no wheel for this Python, ...)."""


def venv_dir() -> Path:
    if os.environ.get("VO_SPHN01_VENV"):
        return Path(os.environ["VO_SPHN01_VENV"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser()
    return cache / "voice-orchestrator" / "sphn-0.1"


def ensure(directory: Path | None = None, *, retry: bool = False) -> Path:
    """The venv's interpreter, making the venv first if needed (blocking; a file lock keeps
    two test runs from making it at once). Raises Unavailable with the reason; a failure of
    the last day is raised again without trying, unless ``retry``."""
    target = directory or venv_dir()
    python = target / "bin" / "python"
    stamp = target / ".requirements"
    failed = target.parent / f".{target.name}.failed"
    wanted = "\n".join(REQUIREMENTS)
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f".{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.is_file() and stamp.is_file() and stamp.read_text() == wanted:
            return python
        if not retry and failed.is_file() and time.time() - failed.stat().st_mtime < RETRY_AFTER_S:
            raise Unavailable(f"failed within a day, not retried: {failed.read_text()}")
        shutil.rmtree(target, ignore_errors=True)
        try:
            _run([sys.executable, "-m", "venv", str(target)], "creating the venv")
            pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            _run(
                [*pip, "--only-binary=:all:", *REQUIREMENTS],
                f"pip install {' '.join(REQUIREMENTS)}",
            )
        except Unavailable as exc:
            failed.write_text(str(exc))
            raise
        stamp.write_text(wanted)
        failed.unlink(missing_ok=True)
    return python


def _run(command: list[str], what: str) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"{what}: {exc}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise Unavailable(f"{what} failed ({done.returncode}): {' / '.join(tail)}")


if __name__ == "__main__":
    try:
        print(ensure(retry=True))
    except Unavailable as exc:
        raise SystemExit(f"error: the sphn 0.1 venv for the Opus test: {exc}") from None
