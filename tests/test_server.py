"""The voice API and console applications through real HTTP, with tiny real engines behind them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from console.app import create_console_app
from orchestrator.api.app import create_api_app
from orchestrator.app.runtime import Runtime
from orchestrator.config import load_config
from tests.conftest import CONSOLE_PASSWORD, RuntimeFactory
from tests.helpers import basic

Client = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def api(runtime: Runtime, aiohttp_client: Client) -> TestClient[Any, Any]:
    return await aiohttp_client(create_api_app(runtime))


async def test_liveness_needs_no_key(api: TestClient[Any, Any]) -> None:
    response = await api.get("/health/live")
    assert response.status == 200
    assert (await response.json())["status"] == "alive"


@pytest.mark.parametrize("path", ["/health", "/health/ready", "/metrics", "/nope"])
@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic abc", "Bearer"])
async def test_everything_else_needs_the_key(
    api: TestClient[Any, Any], path: str, header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    response = await api.get(path, headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert (await response.json())["error"]["code"] == "invalid_api_key"


async def test_unknown_route_is_a_json_404(api: TestClient[Any, Any], auth: dict[str, str]) -> None:
    response = await api.get("/nope", headers=auth)
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"


async def test_health_before_and_after_loading(
    api: TestClient[Any, Any], runtime: Runtime, auth: dict[str, str]
) -> None:
    body = await (await api.get("/health", headers=auth)).json()
    assert body["status"] == "ok"  # unloaded but loadable
    assert body["profile"] == "cpu"
    assert set(body["engines"]) == {"asr", "tts"}
    assert body["engines"]["asr"]["state"] == "unloaded"
    assert body["credits"]["usd_per_hour"] == 0.0
    assert set(body["credits"]["hours_by_state"]) == {"active", "warm", "cool", "cold", "dormant"}
    assert (await api.get("/health/ready", headers=auth)).status == 200

    await runtime.fleet.load("asr")
    await runtime.fleet.load("tts")
    body = await (await api.get("/health", headers=auth)).json()
    asr = body["engines"]["asr"]
    assert asr["state"] == "loaded"
    assert asr["device"] == "cpu"
    assert asr["loads"] == 1
    assert asr["last_load_seconds"] > 0
    assert asr["memory"]["measured_ram_bytes"] is not None
    assert asr["last_error"] is None

    await runtime.fleet.unload("asr")
    body = await (await api.get("/health", headers=auth)).json()
    assert body["engines"]["asr"]["state"] == "unloaded"
    assert body["engines"]["asr"]["memory"]["measured_ram_bytes"] is None


async def test_missing_model_degrades_and_names_it(
    tmp_path: Path,
    tiny_config_file: Path,
    make_runtime: RuntimeFactory,
    aiohttp_client: Client,
    auth: dict[str, str],
) -> None:
    env = {"VO__ENGINES__TTS__MODEL": str(tmp_path / "gone.onnx")}
    runtime = make_runtime(load_config(config_file=tiny_config_file, environ=env))
    client = await aiohttp_client(create_api_app(runtime))
    body = await (await client.get("/health", headers=auth)).json()
    assert body["status"] == "degraded"
    assert body["engines"]["tts"]["state"] == "missing"
    assert "gone.onnx" in body["engines"]["tts"]["last_error"]
    assert body["engines"]["asr"]["state"] == "unloaded"
    assert any("gone.onnx" in problem for problem in body["problems"])
    ready = await client.get("/health/ready", headers=auth)
    assert ready.status == 503
    assert (await ready.json())["engines"]["tts"] == "missing"


async def test_start_preloads_in_the_background(
    api: TestClient[Any, Any], runtime: Runtime, auth: dict[str, str]
) -> None:
    runtime.fleet.start()
    await runtime.fleet.wait_prepared()
    body = await (await api.get("/health", headers=auth)).json()
    assert {e["state"] for e in body["engines"].values()} == {"loaded"}


async def test_metrics_expose_engine_state_and_loads(
    api: TestClient[Any, Any], runtime: Runtime, auth: dict[str, str]
) -> None:
    await runtime.fleet.load("tts")
    response = await api.get("/metrics", headers=auth)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()
    assert 'vo_engine_state{engine="tts",state="loaded"} 1.0' in text
    assert 'vo_engine_state{engine="asr",state="unloaded"} 1.0' in text
    assert 'vo_engine_loads_total{engine="tts",result="ok"} 1.0' in text
    assert 'vo_engine_load_seconds_count{engine="tts"} 1.0' in text
    assert 'vo_engine_memory_bytes{engine="tts",kind="ram",source="measured"}' in text


async def test_console_needs_a_login_and_shows_engines(
    runtime: Runtime, aiohttp_client: Client
) -> None:
    console = await aiohttp_client(create_console_app(runtime))
    for headers in ({}, basic("admin", "wrong"), basic("root", CONSOLE_PASSWORD)):
        response = await console.get("/", headers=headers, allow_redirects=False)
        assert response.status == 303  # to the sign-in page; never a Basic challenge
        assert response.headers["Location"] == "/login?next=/"
    response = await console.get("/engines", headers=basic("admin", CONSOLE_PASSWORD))
    assert response.status == 200
    page = await response.text()
    assert "faster-whisper" in page
    assert "piper" in page
    assert "unloaded" in page


async def test_console_routes_are_not_on_the_voice_port(
    api: TestClient[Any, Any], auth: dict[str, str]
) -> None:
    assert (await api.get("/", headers=auth)).status == 404
