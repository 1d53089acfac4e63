"""Console fixtures: a runtime on fake engines (fast), the console app, and a signed-in client.

The engines are ``tests.fakes.FakeEngine`` at the real fleet, hibernator, store and ledger, so
every console action changes real state without loading models; the ladder runs on a fake
clock that only the test moves.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from console.app import create_console_app
from orchestrator.app.runtime import Runtime
from orchestrator.config import AppConfig, load_config
from orchestrator.hibernation.host_power import SimulatedHost
from services.base import Engine, Role
from tests.conftest import CONSOLE_PASSWORD, RuntimeFactory
from tests.console.managed import ManagedFakeEngine
from tests.fakes import FakeClock, FakeEngine

Client = TestClient[Any, Any]
MakeClient = Callable[[web.Application], Awaitable[Client]]


NO_LLM = """
[engines.llm]
enabled = false
"""


def console_toml(tmp: Path, extra: str = NO_LLM) -> str:
    return (
        f"""
profile = "cpu"

[models]
dir = "{tmp / "models"}"
auto_download = false

[state]
dir = "{tmp / "state"}"

[costs]
gpu_type = "l4-24gb"
usd_per_hour = 0.8
credits_usd = 500.0

[gpu]
backend = "simulated"
simulated_total_mb = 24576

[engines.asr]
role = "asr"
adapter = "faster-whisper"
model = "{tmp / "whisper"}"
estimate_vram_mb = 900
estimate_ram_mb = 700

[engines.tts]
role = "tts"
adapter = "piper"
model = "{tmp / "voice.onnx"}"
estimate_ram_mb = 120

[engines.vad]
enabled = false
"""
        + extra
    )


@pytest.fixture
def extra_toml() -> str:
    """The end of the console runtime's configuration; a test module may override it."""
    return NO_LLM


@pytest.fixture
def engines() -> dict[str, Engine]:
    """The runtime's engines by name; a test module may override it (with ``extra_toml``)."""
    return {"asr": FakeEngine("asr", Role.ASR), "tts": FakeEngine("tts", Role.TTS)}


@pytest.fixture
def console_config(tmp_path: Path, extra_toml: str) -> AppConfig:
    path = tmp_path / "console.toml"
    path.write_text(console_toml(tmp_path, extra_toml))
    return load_config(config_file=path, environ={})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def runtime(
    make_runtime: RuntimeFactory,
    console_config: AppConfig,
    clock: FakeClock,
    engines: dict[str, Engine],
) -> Runtime:
    runtime = make_runtime(console_config, clock=clock, host=SimulatedHost(), engines=engines)
    for engine in engines.values():
        if isinstance(engine, ManagedFakeEngine):
            engine.supervisor = runtime.supervisor
    runtime.hibernator.start()
    return runtime


@pytest.fixture
def console_app(runtime: Runtime) -> web.Application:
    return create_console_app(runtime, environ={})


@pytest.fixture
async def client(console_app: web.Application, aiohttp_client: MakeClient) -> Client:
    return await aiohttp_client(console_app)


async def sign_in(client: Client, password: str = CONSOLE_PASSWORD) -> dict[str, str]:
    """Sign in through the form; the client keeps the cookie. Returns the CSRF header."""
    response = await client.post(
        "/login", data={"password": password, "next": "/"}, allow_redirects=False
    )
    assert response.status == 303, await response.text()
    page = await (await client.get("/")).text()
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
    assert match, "the page carries no CSRF token"
    return {"X-CSRF-Token": match.group(1)}


@pytest.fixture
async def csrf(client: Client) -> dict[str, str]:
    return await sign_in(client)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say where the browser tests left their screenshots (the issue asks for the paths)."""
    from tests.console.browser import SHOTS, written

    if written:
        terminalreporter.write_sep("-", "console screenshots")
        terminalreporter.write_line(f"{len(written)} saved in {SHOTS}/")
