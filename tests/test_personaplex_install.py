"""``python -m orchestrator install personaplex`` with a local stand-in source: a real venv, a
real pip install (offline), and the ``--help`` check; and the clear errors."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.commands import CommandError
from orchestrator.commands.install import resolve_source

SERVER = """import argparse
parser = argparse.ArgumentParser(prog="moshi.server")
parser.add_argument("--port", type=int, default=8998)
parser.parse_args()
raise SystemExit("{message}")
"""


def fake_wheel(folder: Path, *, message: str = "would serve", broken: bool = False) -> Path:
    """A wheel of a package named ``moshi`` whose ``moshi.server`` only parses its arguments."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = "moshi_personaplex-0.1.0.dist-info"
    files = {
        "moshi/__init__.py": b"",
        "moshi/server.py": (b"import a_pinned_dependency_that_is_missing\n" if broken else b"")
        + SERVER.format(message=message).encode(),
        f"{dist}/METADATA": b"Metadata-Version: 2.1\nName: moshi-personaplex\nVersion: 0.1.0\n",
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    path = folder / "moshi_personaplex-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
        wheel.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return path


def config_with(tmp: Path, source: Path) -> Path:
    path = tmp / "install.toml"
    path.write_text(f"""
[state]
dir = "{tmp / "state"}"
[engines.duplex]
role = "duplex"
adapter = "personaplex"
model = "nvidia/personaplex-7b-v1"
[engines.duplex.options]
python = "{tmp / "pp" / "venv" / "bin" / "python"}"
source = "{source}"
""")
    return path


def test_install_builds_the_venv_and_checks_the_server(
    tmp_path: Path, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    wheel = fake_wheel(tmp_path / "dist")
    args = ["install", "personaplex", "--profile", "cpu", "--config"]
    args += [str(config_with(tmp_path, wheel)), "--pip-arg=--no-index", "--pip-arg=--no-deps"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "creating the environment" in out and "--help` runs" in out
    assert (tmp_path / "pp" / "venv" / "bin" / "python").is_file()
    assert main(args) == 0, "a second run reuses the environment"
    assert "creating the environment" not in capsys.readouterr().out


def test_a_server_that_cannot_start_and_a_bad_source_are_clear_errors(
    tmp_path: Path, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    wheel = fake_wheel(tmp_path / "dist", broken=True)
    args = ["install", "personaplex", "--profile", "cpu", "--config"]
    args += [str(config_with(tmp_path, wheel)), "--pip-arg=--no-index", "--pip-arg=--no-deps"]
    assert main(args) == 2
    assert "a_pinned_dependency_that_is_missing" in capsys.readouterr().err
    config = config_with(tmp_path, tmp_path / "nowhere")
    args = ["install", "personaplex", "--profile", "cpu", "--config", str(config)]
    assert main(args) == 2
    assert "neither a folder nor a .whl" in capsys.readouterr().err
    assert main([*args, "--source", str(tmp_path)]) == 2
    assert "not a personaplex checkout" in capsys.readouterr().err


def test_a_checkout_installs_its_moshi_folder(tmp_path: Path) -> None:
    (tmp_path / "repo" / "moshi").mkdir(parents=True)
    (tmp_path / "repo" / "moshi" / "pyproject.toml").write_text("[project]\nname='moshi'\n")
    assert resolve_source(str(tmp_path / "repo")) == tmp_path / "repo" / "moshi"
    with pytest.raises(CommandError, match="no source"):
        resolve_source(None)
