"""deploy/systemd's units: what the issue asks of them, and ``systemd-analyze verify`` on them.

``verify`` wants the ExecStart binary to exist, so it runs with ``--root`` on a temporary tree:
the system's own units (sysinit.target and the rest), ours, and an executable stub where the
project's venv python will be."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.tools import DEPLOY, tool

UNITS = {
    "voice-orchestrator.service": "serve",
    "voice-orchestrator-gateway.service": "gateway",
}
PYTHON = "/opt/voice-orchestrator/.venv/bin/python"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")


def directives(path: Path) -> dict[str, list[str]]:
    """``Key=value`` lines by key, every value of a repeated key (systemd's own reading)."""
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_unit_hardening_and_stop(unit: str) -> None:
    found = directives(DEPLOY / "systemd" / unit)
    expected = {
        "Restart": "on-failure",
        "User": "voice-orchestrator",
        "Group": "voice-orchestrator",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "KillMode": "mixed",  # SIGTERM to our process; it stops the engines' process groups
        "StateDirectory": "voice-orchestrator",
        "CacheDirectory": "voice-orchestrator",
    }
    assert {key: found.get(key, [None])[-1] for key in expected} == expected
    exec_start = found["ExecStart"][-1].split()
    assert exec_start[:4] == [PYTHON, "-m", "orchestrator", UNITS[unit]]
    # Under ProtectSystem=strict only the state and cache directories are writable: the server's
    # state and models must be there.
    env = dict(value.split("=", 1) for value in found["Environment"])
    assert env["VO__STATE__DIR"] == "/var/lib/voice-orchestrator"
    assert env["VO__MODELS__DIR"].startswith("/var/cache/voice-orchestrator/")
    assert env["HOME"] == "/var/lib/voice-orchestrator"
    assert found["EnvironmentFile"][-1].startswith("/etc/voice-orchestrator/")


def verify(tree: Path, units: list[Path]) -> subprocess.CompletedProcess[str]:
    analyze = tool("systemd-analyze", "systemd")
    if not SYSTEM_UNITS.is_dir():
        pytest.fail(f"systemd-analyze without {SYSTEM_UNITS}")
    shutil.copytree(SYSTEM_UNITS, tree / "usr/lib/systemd/system", symlinks=True)
    (tree / "lib").symlink_to("usr/lib")
    target = tree / "etc/systemd/system"
    target.mkdir(parents=True)
    for unit in units:
        shutil.copy(unit, target / unit.name)
    stub = tree / PYTHON.lstrip("/")
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    return subprocess.run(
        [analyze, "verify", f"--root={tree}", "--man=no", "--generators=no"]
        + [unit.name for unit in units],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_systemd_analyze_verify_passes(tmp_path: Path) -> None:
    done = verify(tmp_path, [DEPLOY / "systemd" / unit for unit in sorted(UNITS)])
    # verify only warns (exit 0) about unknown keys and bad values: any output is a finding
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_verify_reports_a_broken_unit(tmp_path: Path) -> None:
    broken = tmp_path / "src" / "broken.service"
    broken.parent.mkdir()
    text = (DEPLOY / "systemd" / "voice-orchestrator.service").read_text()
    broken.write_text(text.replace("KillMode=mixed", "KillMode=mixd\nRestartt=always"))
    done = verify(tmp_path / "root", [broken])
    assert "mixd" in done.stderr and "Restartt" in done.stderr
