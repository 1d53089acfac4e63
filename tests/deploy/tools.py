"""What the deploy kit's tests share: the repo's paths, the external tools they need, the HCL
loader, and a bin folder of recording fakes.

shellcheck, systemd-analyze (Debian's ``shellcheck`` and ``systemd`` packages; .ci/run installs
them) and python-hcl2 (the ``dev`` extra) may be missing on a developer's machine: the tests that
need one skip, naming it. In CI (``CI`` set) a missing tool fails the test instead, so the checks
cannot silently stop running there.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
GCP = DEPLOY / "gcp"
FAKE = Path(__file__).resolve().parent / "fakes" / "fake_command.py"


def missing(what: str, hint: str) -> None:
    """Skip (fail in CI) for want of a tool."""
    message = f"{what} is not installed ({hint})"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run this test: {message}")
    pytest.skip(message)


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing(name, f"apt-get install {package}; .ci/run does")
    assert path is not None
    return path


def load_hcl(path: Path) -> dict[str, Any]:
    """A .tf file as python-hcl2 reads it: string values without their quotes, no comments."""
    try:
        import hcl2
    except ImportError:
        missing("python-hcl2", "the dev extra: scripts/ensure-venv.sh dev")
    options = hcl2.SerializationOptions(
        with_comments=False, explicit_blocks=False, strip_string_quotes=True
    )
    with path.open() as handle:
        parsed: dict[str, Any] = hcl2.load(handle, serialization_options=options)
    return parsed


def fake_bin(folder: Path, *names: str) -> Path:
    """A folder of fakes (``tests/deploy/fakes/fake_command.py`` under each name) for PATH."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).symlink_to(FAKE)
    return folder


def calls(log: Path) -> list[dict[str, Any]]:
    """What the fakes recorded, one dict per call: ``name``, ``args``, maybe ``stdin``."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def argvs(log: Path, name: str) -> list[list[str]]:
    return [call["args"] for call in calls(log) if call["name"] == name]
