"""``python -m orchestrator install vibevoice`` with a stand-in checkout (a real venv, a real
offline pip install, the app import check, the hub cache filled or not), and what the engine
says of each piece that is missing before it is installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli import main
from services.base import EngineSpec, EngineState, Role
from services.errors import ModelMissing
from services.vibevoice_realtime import VibeVoiceRealtime
from tests.peers.vibevoice_realtime_peer import make_checkout

MODEL = "microsoft/VibeVoice-Realtime-0.5B"
TOKENIZER = "Qwen/Qwen2.5-0.5B"
PIP = ["--pip-arg=--no-index", "--pip-arg=--no-deps"]

# A PEP 517 backend inside the stand-in checkout: it zips the package into a wheel, so pip can
# build it offline with nothing to fetch (the real checkout builds with setuptools).
BACKEND = """
import base64, hashlib, zipfile
from pathlib import Path

DIST = "vibevoice-1.0.0.dist-info"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    root = Path(__file__).parent
    files = {f"vibevoice/{p.name}": p.read_bytes() for p in (root / "vibevoice").glob("*.py")}
    metadata = "Metadata-Version: 2.1|Name: vibevoice|Version: 1.0.0|Provides-Extra: streamingtts|"
    files[f"{DIST}/METADATA"] = metadata.replace("|", "\\n").encode()
    tags = "Wheel-Version: 1.0|Generator: test|Root-Is-Purelib: true|Tag: py3-none-any|"
    files[f"{DIST}/WHEEL"] = tags.replace("|", "\\n").encode()
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{DIST}/RECORD,,")
    name = "vibevoice-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(Path(wheel_directory) / name, "w") as wheel:
        for path, data in files.items():
            wheel.writestr(path, data)
        wheel.writestr(f"{DIST}/RECORD", "\\n".join(record) + "\\n")
    return name
"""
PYPROJECT = """[build-system]
requires = []
build-backend = "backend"
backend-path = ["."]

[project]
name = "vibevoice"
version = "1.0.0"

[project.optional-dependencies]
streamingtts = []
"""


def installable_checkout(folder: Path, *, app: str = "import vibevoice\n") -> Path:
    checkout = make_checkout(folder)
    (checkout / "pyproject.toml").write_text(PYPROJECT)
    (checkout / "backend.py").write_text(BACKEND)
    (checkout / "vibevoice").mkdir(exist_ok=True)
    (checkout / "vibevoice" / "__init__.py").write_text("")
    (checkout / "demo" / "web" / "app.py").write_text(app)
    return checkout


def config_with(tmp: Path, **options: Any) -> Path:
    settings = {"home": str(tmp / "vv"), **options}
    table = ", ".join(f"{key} = {json.dumps(value)}" for key, value in settings.items())
    path = tmp / "install.toml"
    path.write_text(f"""
[state]
dir = "{tmp / "state"}"
[engines.tts]
role = "tts"
adapter = "vibevoice-realtime"
model = "{MODEL}"
options = {{ {table} }}
""")
    return path


def engine(tmp: Path, model: str = MODEL, **options: Any) -> VibeVoiceRealtime:
    settings = {"home": str(tmp / "vv"), "offline": False, **options}
    return VibeVoiceRealtime(EngineSpec("tts", Role.TTS, model, tmp / "models", options=settings))


def fill_cache(hf_home: Path, repo: str, files: dict[str, str]) -> None:
    """The hub cache layout huggingface_hub reads offline (refs/main -> snapshots/<rev>/...)."""
    base = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    snapshot = base / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text("0123abcd")
    for name, text in files.items():
        (snapshot / name).write_text(text)


def test_install_builds_the_venv_links_the_checkout_and_checks_the_app(
    tmp_path: Path, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    checkout = installable_checkout(tmp_path / "src" / "VibeVoice")
    built = engine(tmp_path)
    assert built.missing_piece() == (
        f"the VibeVoice environment is missing ({tmp_path / 'vv' / 'venv' / 'bin' / 'python'} "
        "not found)",
        "run `./start.sh install vibevoice --source PATH` (PATH: a microsoft/VibeVoice checkout)",
    )
    args = ["install", "vibevoice", "--profile", "cpu", "--config", str(config_with(tmp_path))]
    args += ["--source", str(checkout), *PIP]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "creating the environment" in out and "server's app imports" in out
    assert f"linked {tmp_path / 'vv' / 'VibeVoice'} -> {checkout}" in out
    python = tmp_path / "vv" / "venv" / "bin" / "python"
    subprocess.run([str(python), "-c", "import vibevoice"], check=True)  # the package is in it
    assert (tmp_path / "vv" / "VibeVoice").resolve() == checkout
    assert built.missing_piece() is None, "everything the server needs is in place"

    assert main(args) == 0, "a second run reuses the environment and the link"
    out = capsys.readouterr().out
    assert "creating the environment" not in out and "linked" not in out


def test_clear_errors_for_what_cannot_be_installed(
    tmp_path: Path, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["install", "vibevoice", "--profile", "cpu"]
    assert main(args) == 2
    assert "no VibeVoice engine is configured" in capsys.readouterr().err
    args += ["--config", str(config_with(tmp_path)), *PIP]
    assert main(args) == 2
    assert "no source: pass --source PATH" in capsys.readouterr().err
    wheel = tmp_path / "vibevoice-1.0.0-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    assert main([*args, "--source", str(wheel)]) == 2
    assert "lacks the real-time demo server" in capsys.readouterr().err
    assert main([*args, "--source", str(tmp_path)]) == 2
    assert "not a VibeVoice checkout" in capsys.readouterr().err
    broken = installable_checkout(tmp_path / "broken", app="import a_pin_that_is_missing\n")
    assert main([*args, "--source", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "importing the server's app" in err and "a_pin_that_is_missing" in err


def test_weights_offline_need_the_cache_and_find_it_filled(
    tmp_path: Path, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    checkout = installable_checkout(tmp_path / "VibeVoice")
    config = config_with(tmp_path, source=str(checkout), hf_home=str(tmp_path / "hf"), offline=True)
    args = ["install", "vibevoice", "--profile", "cpu", "--config", str(config), "--weights", *PIP]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"could not fetch {MODEL}" in err and "offline, and the cache lacks it" in err

    preprocessor = json.dumps({"language_model_pretrained_name": TOKENIZER})
    files = {"config.json": "{}", "preprocessor_config.json": preprocessor}
    fill_cache(tmp_path / "hf", MODEL, {**files, "model.safetensors": ""})
    fill_cache(tmp_path / "hf", TOKENIZER, {"tokenizer.json": "{}", "tokenizer_config.json": "{}"})
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"fetching its text tokenizer {TOKENIZER}" in out and "weights in" in out


def test_each_missing_piece_is_named_with_what_to_do(tmp_path: Path) -> None:
    venv = {"python": sys.executable}
    assert engine(tmp_path, **venv).missing_piece() == (
        f"no VibeVoice checkout at {tmp_path / 'vv' / 'VibeVoice'} "
        "(demo/vibevoice_realtime_demo.py not found)",
        "run `./start.sh install vibevoice --source PATH` (PATH: a microsoft/VibeVoice "
        "checkout), or set options.source to the checkout",
    )
    checkout = make_checkout(tmp_path / "VibeVoice")
    source = {**venv, "source": str(checkout)}
    assert engine(tmp_path, **source, voice="Grace").missing_piece() == (
        f"no voice 'Grace' in {checkout / 'demo' / 'voices' / 'streaming_model'}",
        "set options.voice",
    )
    assert engine(tmp_path, **source, voice="emma").missing_piece() is None

    offline = {**source, "offline": True, "hf_home": str(tmp_path / "hf")}
    message, hint = engine(tmp_path, **offline).missing_piece() or ("", "")
    assert "offline (HF_HUB_OFFLINE=1)" in message and "--weights" in hint
    for name in ("config.json", "preprocessor_config.json", "Qwen/Qwen2.5-1.5B/tokenizer.json"):
        assert name in message
    preprocessor = json.dumps({"language_model_pretrained_name": TOKENIZER})
    files = {"config.json": "{}", "preprocessor_config.json": preprocessor}
    fill_cache(tmp_path / "hf", MODEL, files)
    message, _ = engine(tmp_path, **offline).missing_piece() or ("", "")
    assert "*.safetensors" in message and f"{TOKENIZER}/tokenizer.json" in message
    assert "config.json," not in message

    folder = tmp_path / "model"
    folder.mkdir()
    local = engine(tmp_path, model=str(folder), **source)
    assert local.missing_piece() == (
        f"the model folder {folder} has no config.json",
        "set the engine's model",
    )


async def test_health_and_load_say_missing_before_the_install(tmp_path: Path) -> None:
    absent = engine(tmp_path)
    health = await absent.health()
    assert health.state is EngineState.MISSING
    assert "environment is missing" in health.detail and "install vibevoice" in health.hint
    with pytest.raises(ModelMissing, match="environment is missing"):
        await absent.load()
    assert absent.state is EngineState.MISSING
    assert absent.process_view() is None, "nothing was started"
