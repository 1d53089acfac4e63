"""The gateway's console on a controller over the scripted provider: a login guards every page
and action, the page shows the host's state, history and money, Start and Stop act on the host
and are audited, a foreign Origin is refused, the live stream follows the host, and none of it
loads the runtime."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from console.context import CONSOLE
from orchestrator.config import AppConfig
from orchestrator.config.secrets import Secrets
from orchestrator.gateway.console import create_gateway_console
from orchestrator.gateway.controller import HostController
from orchestrator.gateway.lifecycle import HostState
from orchestrator.gateway.prewarm import PrewarmScheduler
from orchestrator.gateway.providers.base import PowerState
from tests.gateway.hosted import START, gateway_config, hosted, reach, seed_visits, wake_in
from tests.gateway.scripted_provider import Clock, ScriptedProvider

Client = TestClient[Any, Any]
MakeClient = Callable[[web.Application], Awaitable[Client]]
PASSWORD = "gateway-console-password"
JSON = {"Content-Type": "application/json"}


@dataclass
class Gateway:
    controller: HostController
    provider: ScriptedProvider
    clock: Clock
    client: Client

    async def sign_in(self) -> dict[str, str]:
        """Sign in through the form; returns the headers an action needs (JSON, CSRF token)."""
        response = await self.client.post(
            "/login", data={"password": PASSWORD, "next": "/"}, allow_redirects=False
        )
        assert response.status == 303, await response.text()
        match = re.search(r'name="csrf-token" content="([^"]+)"', await self.page())
        assert match, "the page carries no CSRF token"
        return {**JSON, "X-CSRF-Token": match.group(1)}

    async def page(self) -> str:
        response = await self.client.get("/")
        assert response.status == 200
        return await response.text()

    async def audit(self) -> list[dict[str, Any]]:
        entries = await asyncio.to_thread(self.client.app[CONSOLE].audit.recent, 50)
        return [entry.to_dict() for entry in entries]


@pytest.fixture
def config(tmp_path: Path) -> AppConfig:
    return gateway_config(tmp_path)


@pytest.fixture
async def gateway(config: AppConfig, aiohttp_client: MakeClient) -> AsyncIterator[Gateway]:
    provider, clock = ScriptedProvider(), Clock(START)
    secrets = Secrets(api_keys=("a-voice-key",), console_password=PASSWORD)
    async with hosted(config, provider, clock) as controller:
        app = create_gateway_console(controller, config, secrets, environ={}, clock=clock)
        yield Gateway(controller, provider, clock, await aiohttp_client(app))


async def test_everything_but_the_sign_in_needs_a_login(gateway: Gateway) -> None:
    client = gateway.client
    page = await client.get("/", allow_redirects=False)
    assert page.status == 303 and page.headers["Location"] == "/login?next=/"
    for path in ("/events?view=host", "/static/console.js"):
        assert (await client.get(path)).status == 401, path
    for path in ("/api/host/start", "/api/host/stop"):
        assert (await client.post(path, json={})).status == 401, path
    await gateway.controller.settle()
    assert gateway.provider.starts == 0 and gateway.provider.stops == 0
    sign_in_page = await client.get("/login")
    assert sign_in_page.status == 200 and "Password for <strong>admin</strong>" in (
        await sign_in_page.text()
    )
    wrong = await client.post("/login", data={"password": "guess", "next": "/"})
    assert wrong.status == 401
    assert [(e["action"], e["ok"]) for e in await gateway.audit()] == [("login", False)]


async def test_the_page_shows_the_host_its_history_and_its_money(gateway: Gateway) -> None:
    await wake_in(gateway.controller, gateway.provider, gateway.clock, 42.0)
    gateway.clock.advance(3600 - 42.0)
    await gateway.controller.stop("idle: drained for 30 s")
    gateway.clock.advance(600.0)
    await gateway.sign_in()
    response = await gateway.client.get("/")
    assert "Content-Security-Policy" in response.headers
    page = await response.text()
    assert 'id="host-state" data-state="stopped">stopped</span>' in page
    assert '<a class="brand" href="/">voice-orchestrator gateway</a>' in page
    assert 'data-fragment="status"' not in page  # the server's badge: no runtime here
    assert "stopped (idle: drained for 30 s)" in page  # the cause
    for move in ("stopped → starting", "starting → booting", "booting → ready", "→ stopped"):
        assert move in page, move
    assert "A start takes 42 s (p50), 42 s (p95) over 1 start(s)" in page
    # 1 h of host at $2/h and 1 h 10 min of gateway at $0.50/h
    assert '<span class="big">$2.58</span>' in page
    assert "host 1.00 h ($2.00) · gateway 1.2 h ($0.58)" in page
    assert '<span class="big" id="credits-left">$297.42</span>' in page
    start = re.search(r'<button[^>]*id="host-start"[^>]*>', page)
    stop = re.search(r'<button[^>]*id="host-stop"[^>]*>', page)
    assert start and "disabled" not in start.group(0)
    assert stop and "disabled" in stop.group(0)  # nothing to stop


async def test_the_page_shows_the_learned_week_and_the_next_planned_start(
    tmp_path: Path, aiohttp_client: MakeClient
) -> None:
    config = gateway_config(tmp_path, "[gateway.prewarm]\nenabled = true\n")
    week = 7 * 86400.0
    seed_visits(tmp_path, [(START - k * week + 60, START - k * week + 660) for k in (1, 2, 3)])
    clock = Clock(START - 3600)  # Saturday 08:00, an hour before the usual lesson
    secrets = Secrets(api_keys=("a-voice-key",), console_password=PASSWORD)
    async with hosted(config, ScriptedProvider(), clock) as controller:
        scheduler = PrewarmScheduler(controller, config, clock=clock)
        await scheduler.replan()
        app = create_gateway_console(
            controller, config, secrets, environ={}, clock=clock, scheduler=scheduler
        )
        gateway = Gateway(controller, ScriptedProvider(), clock, await aiohttp_client(app))
        await gateway.sign_in()
        page = await gateway.page()
    assert "Pre-warm is <strong>on</strong>" in page
    next_start = re.search(r'<p id="plan-next">(.*?)</p>', page, re.S)
    assert next_start and "Sat 09:00-09:15: sessions started in 3 of the last 3 weeks" in (
        next_start.group(1)
    )
    hot = re.findall(r'<i class="hm-on" style="--share: ([\d.]+)" title="([^"]+)"', page)
    assert hot == [("1.0", "Sat 09:00 · 100 % of 3 weeks")]  # the one slot, and no other


async def test_start_brings_a_stopped_host_up_and_is_audited(gateway: Gateway) -> None:
    headers = await gateway.sign_in()
    with gateway.controller.subscribe() as events:
        response = await gateway.client.post("/api/host/start", headers=headers, json={})
        assert response.status == 200
        await reach(gateway.controller, HostState.READY)
        seen = [events.queue.get_nowait().data["state"] for _ in range(events.queue.qsize())]
    assert seen[:3] == ["starting", "booting", "ready"]
    assert gateway.provider.starts == 1 and gateway.provider.state is PowerState.RUNNING
    started = gateway.controller.transitions()[-3]
    assert (started.target, started.cause) == ("starting", "start asked (operator)")
    entry = (await gateway.audit())[0]
    assert (entry["action"], entry["actor"], entry["via"], entry["ok"]) == (
        "host_start",
        "admin",
        "session",
        True,
    )
    assert entry["details"] == {"state": "stopped"}
    page = await gateway.page()
    assert 'data-state="ready">ready</span>' in page and "host_start" in page


async def test_stop_stops_a_ready_host_and_is_audited(gateway: Gateway) -> None:
    await wake_in(gateway.controller, gateway.provider, gateway.clock, 10.0)
    headers = await gateway.sign_in()
    response = await gateway.client.post("/api/host/stop", headers=headers, json={})
    assert response.status == 200
    # answered once the stop is under way (a cloud VM takes minutes to stop)
    assert (await response.json())["state"] in ("stopping", "stopped")
    while gateway.controller.snapshot().state is not HostState.STOPPED:
        await gateway.controller.settle()
    assert gateway.provider.stops == 1 and gateway.provider.state is PowerState.STOPPED
    assert gateway.controller.transitions()[-1].cause == "stopped (operator)"
    assert (await gateway.audit())[0]["action"] == "host_stop"


@pytest.mark.parametrize(
    ("origin", "csrf", "why"),
    [
        ("http://evil.example", True, "cross-origin request from http://evil.example refused"),
        ("http://127.0.0.1:8766", True, "cross-origin"),  # the server's console is not this one
        (None, False, "CSRF"),
    ],
)
async def test_a_write_from_elsewhere_is_refused(
    gateway: Gateway, origin: str | None, csrf: bool, why: str
) -> None:
    headers = await gateway.sign_in()
    if origin is not None:
        headers["Origin"] = origin
    if not csrf:
        del headers["X-CSRF-Token"]
    response = await gateway.client.post("/api/host/start", headers=headers, json={})
    assert response.status == 403
    assert why in (await response.json())["error"]
    await gateway.controller.settle()
    assert gateway.provider.starts == 0
    assert all(e["action"] != "host_start" for e in await gateway.audit())


async def test_a_write_from_the_console_itself_goes_through(gateway: Gateway) -> None:
    headers = {**await gateway.sign_in(), "Origin": "http://localhost:8767"}
    response = await gateway.client.post("/api/host/start", headers=headers, json={})
    assert response.status == 200
    await reach(gateway.controller, HostState.READY)


async def _update(stream: Any) -> dict[str, Any]:
    """The next ``update`` message of a live stream."""
    while True:
        chunk = (await asyncio.wait_for(stream.content.readuntil(b"\n\n"), 10)).decode()
        if "event: update" in chunk:
            data = next(line for line in chunk.splitlines() if line.startswith("data: "))
            message: dict[str, Any] = json.loads(data[len("data: ") :])
            return message


async def test_the_live_stream_follows_the_host(gateway: Gateway) -> None:
    await gateway.sign_in()
    stream = await gateway.client.get("/events?view=host")
    assert stream.headers["Content-Type"] == "text/event-stream"
    first = await _update(stream)
    assert first["state"] == "stopped"
    assert set(first["fragments"]) == {
        "host_state",
        "host_money",
        "host_plan",
        "host_history",
        "audit_table",
    }
    await gateway.controller.wake("app")
    states = []
    while not states or states[-1] != "ready":
        message = await _update(stream)
        states.append(message["state"])
    assert 'data-state="ready"' in message["fragments"]["host_state"]
    assert "booting → ready" in message["fragments"]["host_history"]
    stream.close()
    assert (await gateway.client.get("/events?view=overview")).status == 404


def test_the_console_loads_nothing_of_the_runtime() -> None:
    probe = (
        "import sys, orchestrator.gateway.console, orchestrator.gateway.ledger_routes;"
        "banned = ('orchestrator.app', 'orchestrator.fleet', 'orchestrator.voice',"
        " 'orchestrator.duplex', 'orchestrator.gpu', 'orchestrator.hibernation',"
        " 'orchestrator.server', 'orchestrator.api.app', 'orchestrator.api.realtime', 'torch',"
        " 'services.registry', 'faster_whisper', 'transformers');"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch',) or"
        " any(m == b or m.startswith(b + '.') for b in banned)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_package_data_ships_the_templates() -> None:
    root = Path(__file__).resolve().parents[2]
    here = root / "orchestrator" / "gateway" / "console"
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = data["package-data"]["orchestrator.gateway.console"]
    shipped = {path for pattern in patterns for path in here.glob(pattern)}
    wanted = {path for path in (here / "templates").rglob("*") if path.is_file()}
    assert wanted and wanted <= shipped, sorted(str(p) for p in wanted - shipped)
