"""shellcheck on every shell script in the repository (tracked or new, not ignored)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.deploy.tools import ROOT, tool

SHEBANG = re.compile(r"^#!\s*(/usr/bin/env\s+)?(/usr)?(/bin/)?(ba|da)?sh\b")


def shell_scripts() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    scripts = []
    for name in sorted(set(listed)):
        path = ROOT / name
        if not path.is_file():
            continue  # deleted in the work tree
        if path.suffix == ".sh":
            scripts.append(name)
            continue
        if path.suffix:
            continue  # .py and the rest: not scripts even when they hold shell text
        with path.open("rb") as handle:
            first = handle.readline().decode("utf-8", "replace")
        if SHEBANG.match(first):
            scripts.append(name)
    return scripts


def test_every_shell_script_is_found() -> None:
    found = set(shell_scripts())
    expected = {
        "start.sh",
        "test.sh",
        ".ci/run",
        "scripts/ensure-venv.sh",
        "deploy/gcp/deploy.sh",
        "deploy/gcp/destroy.sh",
        "deploy/gcp/lib.sh",
        "deploy/gcp/startup.sh",
    }
    assert expected <= found, expected - found


def test_shellcheck_passes_on_every_shell_script() -> None:
    shellcheck = tool("shellcheck", "shellcheck")
    done = subprocess.run(
        [shellcheck, "--external-sources", *shell_scripts()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_shellcheck_finds_a_bug(tmp_path: Path) -> None:
    shellcheck = tool("shellcheck", "shellcheck")
    script = tmp_path / "bad.sh"
    script.write_text("#!/usr/bin/env bash\nrm -rf $1/tmp\n")  # unquoted: splits and globs
    done = subprocess.run([shellcheck, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "SC2086" in done.stdout
