"""``python -m orchestrator status --url`` against a real gateway-shaped app (``/v1/host`` and the
ledger, behind an API key) served on a port, and against a real server: the command finds
which it talks to. The command runs in a thread, as the blocking CLI it is, while the loop
serves it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler

from orchestrator import cli
from orchestrator.api.app import create_api_app
from orchestrator.app.runtime import Runtime
from orchestrator.config import AppConfig
from orchestrator.gateway.controller import HostController
from orchestrator.gateway.ledger_routes import add_ledger_routes
from orchestrator.gateway.lifecycle import HostState
from tests.conftest import API_KEY
from tests.gateway.hosted import START, gateway_config, hosted, reach, wake_in
from tests.gateway.scripted_provider import Clock, ScriptedProvider

MakeServer = Callable[[web.Application], Awaitable[TestServer]]
KEY = "gateway-test-key"


def gateway_app(controller: HostController, config: AppConfig, clock: Clock) -> web.Application:
    """The front door's routes that ``status`` reads, behind its API key."""

    @web.middleware
    async def api_key(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return web.json_response({"error": {"code": "invalid_api_key"}}, status=401)
        return await handler(request)

    async def host(request: web.Request) -> web.Response:
        return web.json_response(controller.snapshot().to_json())

    app = web.Application(middlewares=[api_key])
    app.router.add_get("/v1/host", host)
    add_ledger_routes(app, controller, config, clock=clock)
    return app


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppConfig:
    monkeypatch.setenv("VO_API_KEYS", KEY)
    return gateway_config(tmp_path)


async def status(config: AppConfig, url: str, *extra: str) -> int:
    toml = config.state.dir / "gateway.toml"
    argv = ["status", "--profile", "cpu", "--config", str(toml), "--url", url, *extra]
    return await asyncio.to_thread(cli.main, argv)


@pytest.fixture
async def served(
    config: AppConfig, aiohttp_server: MakeServer
) -> AsyncIterator[tuple[HostController, ScriptedProvider, Clock, str]]:
    provider, clock = ScriptedProvider(), Clock(START)
    async with hosted(config, provider, clock) as controller:
        server = await aiohttp_server(gateway_app(controller, config, clock))
        yield controller, provider, clock, str(server.make_url("")).rstrip("/")


Served = tuple[HostController, ScriptedProvider, Clock, str]


async def test_status_finds_the_gateway_and_prints_host_eta_and_money(
    config: AppConfig, served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    controller, provider, clock, url = served
    await wake_in(controller, provider, clock, 42.0)
    clock.advance(3600 - 42.0)
    await controller.stop("operator")
    clock.advance(3600.0)
    assert await status(config, url) == 0
    out = capsys.readouterr().out
    assert "gateway  host stopped for 1 h (since 2025-03-15 10:00:00 UTC), zone-a/gpu-1" in out
    assert "stopped (operator)" in out  # the cause
    assert "eta      a start takes 42 s (p50), 42 s (p95) over 1" in out
    assert "today  1.00 h host $2.00 + 2.0 h gateway $1.00 = $3.00 (1 start)" in out
    assert "month  1.00 h host $2.00" in out
    assert "credits  $297.00 left of $300.00, burn $36.00/day, runway 8.2 days" in out
    assert "failure" not in out


async def test_status_of_a_waking_host_gives_its_eta(
    config: AppConfig, served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    controller, provider, clock, url = served
    provider.start_gate = asyncio.Event()
    await controller.wake("app")
    await reach(controller, HostState.STARTING)
    clock.advance(30.0)  # a third of the default 90 s ETA
    assert await status(config, url) == 0
    out = capsys.readouterr().out
    provider.start_gate.set()
    assert "host starting for 30 s" in out
    assert "eta      ready in about 1 min (33 %); no start measured yet" in out


async def test_a_failed_start_is_shown_with_its_retry_and_exits_1(
    config: AppConfig, served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    controller, provider, clock, url = served
    provider.fail_starts.append("ZONE_RESOURCE_POOL_EXHAUSTED in zone-a")
    await controller.wake("app")
    await reach(controller, HostState.FAILED)
    clock.advance(5.0)
    assert await status(config, url) == 1
    out = capsys.readouterr().out
    assert "failure  ZONE_RESOURCE_POOL_EXHAUSTED in zone-a (next try in 10 s)" in out
    assert "(1 start, 1 failed)" in out


async def test_status_json_prints_the_host_and_the_ledger(
    config: AppConfig, served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    controller, provider, clock, url = served
    await wake_in(controller, provider, clock, 20.0)
    assert await status(config, url, "--json") == 0
    body = json.loads(capsys.readouterr().out)
    assert body["host"]["state"] == "ready" and body["host"]["eta_s"] == 0.0
    assert body["ledger"]["start_to_ready"]["p50_s"] == 20.0
    assert body["ledger"]["today"]["starts"] == 1


async def test_status_on_a_server_still_prints_its_health(
    runtime: Runtime,
    aiohttp_server: MakeServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tiny_config_file: Path,
) -> None:
    monkeypatch.setenv("VO_API_KEYS", API_KEY)
    server = await aiohttp_server(create_api_app(runtime))
    url = str(server.make_url("")).rstrip("/")
    argv = ["status", "--config", str(tiny_config_file), "--url", url]
    code = await asyncio.to_thread(cli.main, argv)
    out = capsys.readouterr().out
    assert out.startswith("status ok"), out
    assert code == 0 and "hibernation" in out
    assert await asyncio.to_thread(cli.main, [*argv, "--gateway"]) == 2  # not a gateway: 404
    assert "/v1/host answered 404" in capsys.readouterr().err
