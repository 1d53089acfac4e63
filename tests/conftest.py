"""Shared fixtures: tiny real models built offline once per session, configs and servers.

The hub is switched off before anything imports huggingface_hub, so a test that would reach for
the network fails at once instead of hanging on a machine without internet.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("VO_API_KEYS", None)
os.environ.pop("VO_CONSOLE_PASSWORD", None)

import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from orchestrator.app.runtime import Runtime
from orchestrator.config import AppConfig, load_config
from orchestrator.config.secrets import Secrets
from tests.fixtures.tiny_llm import build_tiny_llm
from tests.fixtures.tiny_piper import build_tiny_piper_voice
from tests.fixtures.tiny_translator import build_tiny_translator
from tests.fixtures.tiny_vlm import build_tiny_vlm
from tests.fixtures.tiny_whisper import build_tiny_whisper
from tests.vision_helpers import vlm_toml

# CI replays the same examples every run (a red CI must not be luck); elsewhere hypothesis
# explores new ones each run, and what it finds is kept as an ``@example``.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

API_KEY = "test-key-0123456789"
CONSOLE_PASSWORD = "test-console-password"


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper"))


@pytest.fixture(scope="session")
def heavy_whisper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Whisper with ~36 MB of float32 weights: heavy enough for RSS to show them."""
    folder = tmp_path_factory.mktemp("heavy-whisper")
    return build_tiny_whisper(folder, ffn_dim=16384, quantization="float32")


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llm(tmp_path_factory.mktemp("tiny-llm"))


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_vlm(tmp_path_factory.mktemp("tiny-vlm"))


@pytest.fixture(scope="session")
def tiny_piper_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_piper_voice(tmp_path_factory.mktemp("tiny-piper"))


@pytest.fixture(scope="session")
def tiny_nllb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_translator(tmp_path_factory.mktemp("tiny-nllb"), "nllb")


@pytest.fixture(scope="session")
def tiny_m2m100_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_translator(tmp_path_factory.mktemp("tiny-m2m100"), "m2m100")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tiny_profile_toml(whisper: Path, piper: Path, tmp: Path, *, preload: bool = True) -> str:
    """A user config that runs both in-process engines on the tiny test models."""
    return f"""
profile = "cpu"

[server]
api_host = "127.0.0.1"
api_port = {free_port()}
console_port = {free_port()}
shutdown_grace_s = 2

[models]
dir = "{tmp / "models"}"
auto_download = false

[state]
dir = "{tmp / "state"}"

[engines.asr]
role = "asr"
adapter = "faster-whisper"
model = "{whisper}"
compute_type = "int8"
preload = {str(preload).lower()}
options = {{ cpu_threads = 1 }}

[engines.tts]
role = "tts"
adapter = "piper"
model = "{piper}"
preload = {str(preload).lower()}
options = {{ noise_scale = 0.0, noise_w_scale = 0.0 }}  # deterministic audio length

[engines.vad]
enabled = false

[engines.llm]
enabled = false
"""


def cascade_toml(whisper: Path, piper: Path, llm: Path, tmp: Path) -> str:
    """The tiny profile plus the Silero VAD and a tiny LLM: everything a voice session needs."""
    text = tiny_profile_toml(whisper, piper, tmp, preload=False).split("[engines.vad]")[0]
    return (
        text
        + f"""
[engines.vad]
role = "vad"
adapter = "silero-vad"
model = "bundled"

[engines.llm]
role = "llm"
adapter = "transformers"
model = "{llm}"
options = {{ max_new_tokens = 48, min_new_tokens = 24, temperature = 1.0 }}
"""
    )


@pytest.fixture
def tiny_config_file(tmp_path: Path, tiny_whisper_dir: Path, tiny_piper_onnx: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(tiny_profile_toml(tiny_whisper_dir, tiny_piper_onnx, tmp_path))
    return path


@pytest.fixture
def tiny_config(tiny_config_file: Path) -> AppConfig:
    return load_config(config_file=tiny_config_file, environ={})


@pytest.fixture
def secrets() -> Secrets:
    return Secrets(api_keys=(API_KEY,), console_password=CONSOLE_PASSWORD)


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("VO__"):
            monkeypatch.delenv(name)
    yield


@pytest.fixture
def cascade_config_file(
    tmp_path: Path, tiny_whisper_dir: Path, tiny_piper_onnx: Path, tiny_llm_dir: Path
) -> Path:
    """The tiny profile plus the Silero VAD and a tiny LLM: everything a voice session needs."""
    text = cascade_toml(tiny_whisper_dir, tiny_piper_onnx, tiny_llm_dir, tmp_path)
    path = tmp_path / "cascade.toml"
    path.write_text(text)
    return path


@pytest.fixture
def cascade_config(cascade_config_file: Path) -> AppConfig:
    return load_config(config_file=cascade_config_file, environ={})


class RuntimeFactory:
    """Builds the runtimes a test needs; the ``make_runtime`` fixture stops them all after it.

    ``Runtime.stop`` is not idempotent (a second call writes to a closed database), so a test
    that checks what stopping does stops the runtime through :meth:`stop`, which also forgets it.
    """

    def __init__(self, secrets: Secrets) -> None:
        self._secrets = secrets
        self._live: list[Runtime] = []

    def __call__(
        self,
        config: AppConfig,
        *,
        secrets: Secrets | None = None,
        writer: bool = False,
        **create: Any,
    ) -> Runtime:
        """``Runtime.create(config, secrets, **create)``; ``writer=True`` also starts the
        hibernation writer (what a voice session needs), so call it where a loop runs. A test
        that wants the whole ``start()`` calls it itself."""
        runtime = Runtime.create(config, secrets or self._secrets, **create)
        self._live.append(runtime)
        if writer:
            runtime.hibernator.start()
        return runtime

    async def stop(self, runtime: Runtime) -> None:
        """Stop ``runtime`` now, in the test's own time; teardown will not stop it again."""
        self._live.remove(runtime)
        await runtime.stop()

    async def stop_all(self) -> None:
        """Stop every runtime still running, the newest first; each is stopped even if one fails."""
        async with AsyncExitStack() as stack:
            while self._live:
                stack.push_async_callback(self._live.pop(0).stop)


@pytest.fixture
async def make_runtime(secrets: Secrets) -> AsyncIterator[RuntimeFactory]:
    factory = RuntimeFactory(secrets)
    yield factory
    await factory.stop_all()


@pytest.fixture
async def runtime(make_runtime: RuntimeFactory, tiny_config: AppConfig) -> Runtime:
    """The tiny profile (ASR and TTS), nothing started; stopped after the test."""
    return make_runtime(tiny_config)


@pytest.fixture
async def cascade_runtime(make_runtime: RuntimeFactory, cascade_config: AppConfig) -> Runtime:
    """A runtime with every cascade engine, its hibernation writer running; stopped after."""
    return make_runtime(cascade_config, writer=True)


@pytest.fixture(scope="module")
def ollama_url(peer_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Ollama peer (``tests/peers/ollama_peer.py``) serving what the module's own
    ``peer_env`` fixture says (its models, delays, registry), on a free port."""
    from tests.peers.watch import start_peer, stop_peer

    port = free_port()
    log_file = tmp_path_factory.mktemp("ollama") / "peer.log"
    env = {**peer_env, "OLLAMA_HOST": f"127.0.0.1:{port}"}
    process = start_peer("tests.peers.ollama_peer", ["serve"], env, port, log_file)
    yield f"http://127.0.0.1:{port}"
    stop_peer(process)


@pytest.fixture
def vlm_config(
    tmp_path: Path,
    tiny_whisper_dir: Path,
    tiny_piper_onnx: Path,
    tiny_llm_dir: Path,
    tiny_vlm_dir: Path,
) -> AppConfig:
    text = cascade_toml(tiny_whisper_dir, tiny_piper_onnx, tiny_llm_dir, tmp_path)
    path = tmp_path / "vlm.toml"
    path.write_text(text + vlm_toml(tiny_vlm_dir))
    return load_config(config_file=path, environ={})
