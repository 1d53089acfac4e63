"""The console's admin API: login, CSRF guard, and each operator action changing real state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from console.app import create_console_app
from orchestrator.config import AppConfig
from orchestrator.host_power import SimulatedHost
from orchestrator.ladder import IdleState
from orchestrator.runtime import Runtime
from orchestrator.secrets import Secrets
from tests.conftest import CONSOLE_PASSWORD
from tests.fakes import FakeClock
from tests.test_server import basic

ADMIN = basic("admin", CONSOLE_PASSWORD)


@pytest.fixture
async def runtime(tiny_config: AppConfig, secrets: Secrets) -> AsyncIterator[Runtime]:
    runtime = Runtime.create(tiny_config, secrets, clock=FakeClock(), host=SimulatedHost())
    runtime.hibernator.start()
    yield runtime
    await runtime.stop()


@pytest.fixture
async def console(runtime: Runtime, aiohttp_client: Any) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await aiohttp_client(create_console_app(runtime))
    return client


async def test_actions_need_the_login(console: TestClient[Any, Any]) -> None:
    for path in ("/api/state", "/api/transitions"):
        assert (await console.get(path)).status == 401
    response = await console.post("/api/hibernation/hibernate", json={})
    assert response.status == 401


async def test_form_posts_and_foreign_origins_are_refused(
    console: TestClient[Any, Any], runtime: Runtime
) -> None:
    form = await console.post("/api/hibernation/hibernate", data={"state": "cold"}, headers=ADMIN)
    assert form.status == 415
    foreign = await console.post(
        "/api/hibernation/hibernate",
        json={"state": "cold"},
        headers={**ADMIN, "Origin": "http://evil.example"},
    )
    assert foreign.status == 403
    assert runtime.hibernator.state is IdleState.ACTIVE


async def test_hibernate_and_wake(console: TestClient[Any, Any], runtime: Runtime) -> None:
    with runtime.bus.subscribe() as events:
        response = await console.post(
            "/api/hibernation/hibernate", json={"state": "cold"}, headers=ADMIN
        )
        assert response.status == 200
        assert (await response.json())["state"] == "cold"
        published = [events.queue.get_nowait() for _ in range(events.queue.qsize())]
    audit = [event for event in published if event.type == "audit"]
    assert audit and audit[0].data["action"] == "hibernate"
    assert runtime.hibernator.state is IdleState.COLD

    response = await console.post("/api/hibernation/wake", json={}, headers=ADMIN)
    assert (await response.json())["state"] == "active"
    await runtime.fleet.load("asr")  # joins the pre-warm load the wake started
    assert runtime.fleet.engine("asr").state.value == "loaded"

    history = await (await console.get("/api/transitions", headers=ADMIN)).json()
    assert [(t["source"], t["target"]) for t in history] == [("active", "cold"), ("cold", "active")]


async def test_bad_requests_get_clear_errors(console: TestClient[Any, Any]) -> None:
    bad_state = await console.post(
        "/api/hibernation/hibernate", json={"state": "asleep"}, headers=ADMIN
    )
    assert bad_state.status == 400
    assert "state must be one of" in (await bad_state.json())["error"]
    bad_minutes = await console.post(
        "/api/hibernation/keep-awake", json={"minutes": -5}, headers=ADMIN
    )
    assert bad_minutes.status == 400
    not_json = await console.post(
        "/api/hibernation/keep-awake",
        data=b"{oops",
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert not_json.status == 400
    unknown = await console.post("/api/engines/llm/load", json={}, headers=ADMIN)
    assert unknown.status == 404
    action = await console.post("/api/engines/asr/explode", json={}, headers=ADMIN)
    assert action.status == 404


async def test_keep_awake_pin_load_unload(console: TestClient[Any, Any], runtime: Runtime) -> None:
    response = await console.post(
        "/api/hibernation/keep-awake", json={"minutes": 60}, headers=ADMIN
    )
    assert (await response.json())["keep_awake_until"] is not None

    pinned = await console.post("/api/engines/tts/pin", json={"pinned": True}, headers=ADMIN)
    assert (await pinned.json())["pinned"] is True
    assert runtime.store.get("pins") == ["tts"]

    loaded = await console.post("/api/engines/tts/load", json={}, headers=ADMIN)
    assert (await loaded.json())["state"] == "loaded"
    await runtime.hibernator.force(IdleState.COLD)
    assert runtime.fleet.engine("tts").state.value == "loaded"  # the pin held

    unloaded = await console.post("/api/engines/tts/unload", json={}, headers=ADMIN)
    assert (await unloaded.json())["state"] == "unloaded"  # an operator's unload overrides it

    state = await (await console.get("/api/state", headers=ADMIN)).json()
    assert state["engines"]["tts"] == {"state": "unloaded", "pinned": True}
