"""``./start.sh`` itself: it serves the configured profile and leaves nothing behind on a signal."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import API_KEY

ROOT = Path(__file__).resolve().parent.parent


def wait_until_live(port: int, proc: subprocess.Popen[str], deadline_s: float = 120) -> None:
    """Poll the liveness probe until it answers, the process dies, or the deadline passes."""
    with httpx.Client(timeout=2) as client:
        for _ in range(int(deadline_s * 4)):
            if proc.poll() is not None:
                raise AssertionError(f"start.sh exited early with {proc.returncode}")
            try:
                if client.get(f"http://127.0.0.1:{port}/health/live").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            try:
                proc.wait(timeout=0.25)
            except subprocess.TimeoutExpired:
                continue
    raise AssertionError("start.sh did not come up in time")


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_start_sh_serves_and_stops_cleanly(tiny_config_file: Path, stop_signal: int) -> None:
    server = tomllib.loads(tiny_config_file.read_text())["server"]
    env = {
        **os.environ,
        "VO_VENV": sys.prefix,
        "VO_API_KEYS": API_KEY,
        "VO_CONSOLE_PASSWORD": "console-pw",
    }
    proc = subprocess.Popen(
        [str(ROOT / "start.sh"), "--config", str(tiny_config_file)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until_live(server["api_port"], proc)
        status = subprocess.run(
            [sys.executable, "-m", "orchestrator", "status", "--config", str(tiny_config_file)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "asr" in status.stdout and "tts" in status.stdout, status.stderr
        assert "hibernation active" in status.stdout
        assert "credits" in status.stdout and "runway" in status.stdout
        for command, expected in (
            ("hibernate", "hibernation cold"),
            ("wake", "hibernation active"),
        ):
            control = subprocess.run(
                [sys.executable, "-m", "orchestrator", command, "--config", str(tiny_config_file)],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert control.stdout.startswith(expected), control.stderr
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        proc.send_signal(stop_signal)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert f"http://127.0.0.1:{server['api_port']}" in output
    assert "Traceback" not in output
    assert not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert port_is_free(server["api_port"])
    assert port_is_free(server["console_port"])


def test_start_sh_install_runs_the_install_command() -> None:
    env = {**os.environ, "VO_VENV": sys.prefix}
    done = subprocess.run(
        [str(ROOT / "start.sh"), "install", "personaplex", "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "install" in done.stdout and "--source" in done.stdout
    wrong = subprocess.run(
        [str(ROOT / "start.sh"), "install", "kokoro"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert wrong.returncode != 0 and "'personaplex', 'vibevoice'" in wrong.stderr
