"""The command line as an operator meets it: one clear line for each mistake, no tracebacks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_clean_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr


def test_bad_config_is_one_clear_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[engines.asr]\ncompute_type = 5\ndevice = "tpu"\n')
    result = run_cli("serve", "--profile", "cpu", "--config", str(bad))
    assert_clean_error(result, "engines.asr.device", str(bad), "'tpu'", "engines.asr.compute_type")


def test_port_in_use_is_one_clear_message(tiny_config_file: Path) -> None:
    port = tomllib.loads(tiny_config_file.read_text())["server"]["api_port"]
    with socket.socket() as stranger:
        stranger.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        stranger.bind(("127.0.0.1", port))
        stranger.listen()
        result = run_cli("serve", "--config", str(tiny_config_file))
    assert_clean_error(result, f"port {port}", "already in use", "VO__SERVER__API_PORT")


def test_status_without_a_server(tiny_config_file: Path) -> None:
    result = run_cli("status", "--config", str(tiny_config_file))
    assert_clean_error(result, "no server answers")


def test_download_offline_names_what_is_missing(tmp_path: Path) -> None:
    env = {"VO__MODELS__DIR": str(tmp_path / "models"), "VO__STATE__DIR": str(tmp_path)}
    result = run_cli("download", "--profile", "cpu", "--engine", "tts", env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "en_US-lessac-medium.onnx" in result.stderr
    assert "python -m orchestrator download" in result.stderr


def test_download_of_local_models_does_nothing(tiny_config_file: Path) -> None:
    result = run_cli("download", "--config", str(tiny_config_file))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("nothing to download") == 2


@pytest.mark.parametrize("engine", ["llm"])
def test_download_of_an_unknown_engine(tiny_config_file: Path, engine: str) -> None:
    result = run_cli("download", "--config", str(tiny_config_file), "--engine", engine)
    assert_clean_error(result, "unknown engine(s): llm")
