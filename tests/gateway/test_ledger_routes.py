"""``GET /v1/host/ledger`` on a bare aiohttp app, over a controller on the scripted provider:
what it bills follows what the host did, by the test's clock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from orchestrator.gateway.ledger_routes import add_ledger_routes
from orchestrator.gateway.store import GatewayStore, HostTransition
from tests.gateway.hosted import START, gateway_config, hosted, wake_in
from tests.gateway.scripted_provider import Clock, ScriptedProvider

Client = TestClient[Any, Any]
MakeClient = Callable[[web.Application], Awaitable[Client]]


async def test_the_ledger_bills_what_the_host_did(
    tmp_path: Path, aiohttp_client: MakeClient
) -> None:
    config, provider, clock = gateway_config(tmp_path), ScriptedProvider(), Clock(START)
    async with hosted(config, provider, clock) as controller:
        app = web.Application()
        add_ledger_routes(app, controller, config, clock=clock)
        client = await aiohttp_client(app)

        await wake_in(controller, provider, clock, 42.0)
        clock.advance(3600 - 42.0)  # ready for the rest of the hour
        await controller.stop("operator")
        clock.advance(3600.0)  # stopped for an hour: only the gateway bills

        response = await client.get("/v1/host/ledger", params={"days": "3"})
        assert response.status == 200
        body = await response.json()
    today = body["today"]
    assert today["host_hours"] == pytest.approx(1.0)
    assert today["host_usd"] == pytest.approx(2.0)
    assert today["gateway_hours"] == pytest.approx(2.0)  # since the gateway's first transition
    assert today["total_usd"] == pytest.approx(2.0 + 0.5 * 2)
    assert today["starts"] == 1 and today["failed_starts"] == 0
    assert body["month"]["host_hours"] == pytest.approx(1.0)
    assert [day["day"] for day in body["days"]] == ["2025-03-13", "2025-03-14", "2025-03-15"]
    assert body["start_to_ready"] == {"measured": 1, "p50_s": 42.0, "p95_s": 42.0}
    credits = body["credits"]
    assert credits["spent_usd"] == pytest.approx(3.0)
    assert credits["remaining_usd"] == pytest.approx(297.0)
    assert credits["burn_usd_per_day"] == pytest.approx(3.0 * 12)  # $3 in 2 h of history
    assert credits["runway_days"] == pytest.approx(297.0 / 36.0, abs=0.01)
    assert body["host_usd_per_hour"] == 2.0 and body["gateway_usd_per_hour"] == 0.5


async def test_an_open_stretch_is_billed_up_to_now(
    tmp_path: Path, aiohttp_client: MakeClient
) -> None:
    config, provider, clock = gateway_config(tmp_path), ScriptedProvider(), Clock(START)
    async with hosted(config, provider, clock) as controller:
        app = web.Application()
        add_ledger_routes(app, controller, config, clock=clock)
        client = await aiohttp_client(app)
        await wake_in(controller, provider, clock, 30.0)
        clock.advance(1770.0)
        first = await (await client.get("/v1/host/ledger")).json()
        clock.advance(1800.0)
        second = await (await client.get("/v1/host/ledger")).json()
    assert first["today"]["host_hours"] == pytest.approx(0.5)
    assert second["today"]["host_hours"] == pytest.approx(1.0)
    assert len(first["days"]) == 30


@pytest.mark.parametrize("days", ["0", "367", "a week"])
async def test_a_bad_days_is_a_400_naming_it(
    tmp_path: Path, aiohttp_client: MakeClient, days: str
) -> None:
    config, provider, clock = gateway_config(tmp_path), ScriptedProvider(), Clock(START)
    async with hosted(config, provider, clock) as controller:
        app = web.Application()
        add_ledger_routes(app, controller, config, clock=clock)
        client = await aiohttp_client(app)
        response = await client.get("/v1/host/ledger", params={"days": days})
        body = await response.json()
    assert response.status == 400
    assert body["error"]["code"] == "invalid_value" and body["error"]["param"] == "days"


def test_the_whole_history_can_be_read_past_the_default_limit(tmp_path: Path) -> None:
    store = GatewayStore.in_dir(tmp_path)
    for n in range(1005):
        store.add_transition(HostTransition(float(n), "stopped", "stopped", "", "", "stopped"))
    assert len(store.transitions()) == 1000
    everything = store.transitions(limit=None)
    assert len(everything) == 1005 and everything[0].at == 0.0
    store.close()
