"""``/metrics``: requests by route template, the hibernation state and its wakes, credits.

The server app is the real one (``create_api_app``); the engines are fakes where a test needs
to hold a load (a wake) and the ladder runs on a fake clock, so every figure is exact.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from orchestrator.api.app import create_api_app
from orchestrator.app.runtime import Runtime
from orchestrator.config import load_config
from orchestrator.config.secrets import Secrets
from orchestrator.core.idle import IdleState
from orchestrator.core.metrics import WakeTimer
from orchestrator.core.store import TransitionRecord
from orchestrator.hibernation.host_power import SimulatedHost
from tests.conftest import RuntimeFactory
from tests.fakes import ENGINES, FakeClock, FakeEngine, fake_runtime
from tests.helpers import sample, samples

Client = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
KEY = {"Authorization": "Bearer k"}  # the fake runtime's API key


async def scrape(client: TestClient[Any, Any], headers: dict[str, str]) -> str:
    response = await client.get("/metrics", headers=headers)
    assert response.status == 200
    return await response.text()


# -- requests ---------------------------------------------------------------------------------


async def item(request: web.Request) -> web.Response:
    return web.json_response({"item": request.match_info["item"]})


async def echo_socket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.close()
    return ws


async def test_requests_are_counted_by_route_template_and_status(
    runtime: Runtime, aiohttp_client: Client, auth: dict[str, str]
) -> None:
    app = create_api_app(runtime)
    app.router.add_get("/v1/items/{item}", item)  # a route with a variable part
    app.router.add_get("/v1/echo", echo_socket)
    client = await aiohttp_client(app)
    for path in ("/v1/items/41", "/v1/items/42", "/health?verbose=1", "/no/such/path/7"):
        await client.get(path, headers=auth)
    assert (await client.get("/health")).status == 401  # refused before any handler
    async with client.ws_connect("/v1/echo", headers=auth) as ws:
        await ws.receive()

    page = samples(await scrape(client, auth))
    requests = "vo_http_requests_total"
    assert sample(page, requests, route="/v1/items/{item}", method="GET", status="200") == 2
    assert sample(page, requests, route="/health", method="GET", status="200") == 1
    assert sample(page, requests, route="/health", method="GET", status="401") == 1
    assert sample(page, requests, route="unmatched", method="GET", status="404") == 1
    assert sample(page, requests, route="/v1/echo", method="GET", status="101") == 1
    routes = {dict(labels)["route"] for name, labels in page if name == requests}
    assert routes == {"/v1/items/{item}", "/health", "unmatched", "/v1/echo"}  # no raw path
    seconds = "vo_http_request_duration_seconds_count"
    assert sample(page, seconds, route="/v1/items/{item}", method="GET", status="200") == 2
    # a WebSocket's time is its session's: counted, never timed as a request
    assert sample(page, seconds, route="/v1/echo", method="GET", status="101") is None

    page = samples(await scrape(client, auth))  # the first scrape is counted by the next
    assert sample(page, requests, route="/metrics", method="GET", status="200") == 1


# -- hibernation ------------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def fake(tmp_path: Path, clock: FakeClock, make_runtime: RuntimeFactory) -> Runtime:
    """Fake engines, the ladder on a fake clock, the hibernation writer running."""
    runtime = fake_runtime(tmp_path, clock, {}, make_runtime)
    runtime.hibernator.start()
    return runtime


async def test_a_transition_moves_the_state_gauge_and_the_counter(
    fake: Runtime, clock: FakeClock, aiohttp_client: Client
) -> None:
    client = await aiohttp_client(create_api_app(fake))
    clock.advance(5)
    page = samples(await scrape(client, KEY))
    assert sample(page, "vo_hibernation_state", state="active") == 1
    assert sample(page, "vo_hibernation_state", state="cold") == 0
    assert sample(page, "vo_hibernation_time_in_state_seconds") == 5  # since the server began

    await fake.hibernator.force(IdleState.COLD)
    clock.advance(42)
    page = samples(await scrape(client, KEY))
    assert sample(page, "vo_hibernation_state", state="active") == 0
    assert sample(page, "vo_hibernation_state", state="cold") == 1
    assert sample(page, "vo_hibernation_transitions_total", source="active", target="cold") == 1
    assert sample(page, "vo_hibernation_time_in_state_seconds") == 42


async def test_time_in_state_survives_a_restart(
    tmp_path: Path, clock: FakeClock, make_runtime: RuntimeFactory, aiohttp_client: Client
) -> None:
    first = fake_runtime(tmp_path, clock, {}, make_runtime)
    first.hibernator.start()
    await first.hibernator.force(IdleState.COOL)
    await make_runtime.stop(first)
    clock.advance(600)
    second = fake_runtime(tmp_path, clock, {}, make_runtime)
    page = samples(await scrape(await aiohttp_client(create_api_app(second)), KEY))
    assert sample(page, "vo_hibernation_state", state="cool") == 1
    assert sample(page, "vo_hibernation_time_in_state_seconds") == 600


async def test_a_wake_is_timed_until_the_engines_it_waited_for_are_loaded(
    fake: Runtime, clock: FakeClock
) -> None:
    await fake.hibernator.force(IdleState.COLD)
    asr = fake.fleet.engine("asr")
    assert isinstance(asr, FakeEngine)
    asr.hold = asyncio.Event()

    async def request() -> None:
        async with fake.fleet.lease(["asr"]):
            pass

    task = asyncio.create_task(request())
    await asr.loading.wait()
    await fake.hibernator.settled()  # the wake is applied while the engine still loads
    assert fake.hibernator.state is IdleState.ACTIVE
    wake = "vo_hibernation_wake_seconds"
    assert sample(fake.metrics.render().decode(), f"{wake}_count", source="cold") is None
    clock.advance(7)
    asr.hold.set()
    await task

    page = samples(fake.metrics.render().decode())
    assert sample(page, f"{wake}_count", source="cold") == 1
    assert sample(page, f"{wake}_sum", source="cold") == 7
    assert sample(page, f"{wake}_bucket", source="cold", le="5.0") == 0
    assert sample(page, f"{wake}_bucket", source="cold", le="10.0") == 1
    assert sample(page, "vo_hibernation_transitions_total", source="cold", target="active") == 1


def record(source: IdleState, target: IdleState, at: float) -> TransitionRecord:
    return TransitionRecord(at, source.value, target.value, "test", [], {}, {}, 0.0)


def test_wake_timer_edges(clock: FakeClock) -> None:
    """A load that ended before the writer applied the wake counts; nothing to load is 0 s;
    a descent before the loads ended drops the wake."""
    seen: list[tuple[str, float]] = []
    timer = WakeTimer(lambda source, seconds: seen.append((source, seconds)), clock)
    woke_at = clock.now
    timer.engine_state("asr", "loading")
    clock.advance(3)
    timer.engine_state("asr", "loaded")
    clock.advance(1)
    timer.transition(record(IdleState.COOL, IdleState.ACTIVE, woke_at))
    assert seen == [("cool", 3.0)]

    clock.advance(100)
    timer.transition(record(IdleState.WARM, IdleState.ACTIVE, clock.now))
    assert seen[-1] == ("warm", 0.0)

    timer.engine_state("tts", "loading")
    timer.transition(record(IdleState.COLD, IdleState.ACTIVE, clock.now))
    timer.transition(record(IdleState.ACTIVE, IdleState.COLD, clock.now))
    timer.engine_state("tts", "loaded")
    assert len(seen) == 2


# -- sessions and credits ---------------------------------------------------------------------


class Described:
    def __init__(self, **summary: str) -> None:
        self._summary = summary

    def summary(self) -> dict[str, str]:
        return self._summary


async def test_open_sessions_by_protocol_and_backend(fake: Runtime, aiohttp_client: Client) -> None:
    client = await aiohttp_client(create_api_app(fake))
    fake.sessions["a"] = Described(backend="cascade")  # a Realtime cascade session
    fake.sessions["b"] = Described(protocol="duplex", backend="duplex")
    fake.sessions["c"] = Described(protocol="duplex", backend="duplex")
    page = samples(await scrape(client, KEY))
    assert sample(page, "vo_sessions_open", protocol="realtime", backend="cascade") == 1
    assert sample(page, "vo_sessions_open", protocol="duplex", backend="duplex") == 2
    assert sample(page, "vo_sessions_open", protocol="realtime", backend="duplex") == 0
    fake.sessions.clear()
    page = samples(await scrape(client, KEY))
    assert sample(page, "vo_sessions_open", protocol="duplex", backend="duplex") == 0


async def test_credits_billed_time_and_runway(
    tmp_path: Path, clock: FakeClock, make_runtime: RuntimeFactory, aiohttp_client: Client
) -> None:
    path = tmp_path / "costs.toml"
    path.write_text(
        f"""
profile = "cpu"
[state]
dir = "{tmp_path}"
[models]
auto_download = false
[costs]
usd_per_hour = 2.0
credits_usd = 100.0
"""
    )
    engines = {name: FakeEngine(name, role) for name, role in ENGINES.items() if name != "asr2"}
    runtime = make_runtime(
        load_config(config_file=path, environ={}),
        secrets=Secrets(api_keys=("k",), console_password="p"),
        clock=clock,
        host=SimulatedHost(),
        engines=engines,
    )
    client = await aiohttp_client(create_api_app(runtime))
    page = samples(await scrape(client, KEY))
    assert sample(page, "vo_credits_remaining_usd") == 100
    assert sample(page, "vo_credits_runway_seconds") == math.inf  # nothing burns yet

    runtime.ledger.host_on(clock.now)
    clock.advance(3 * 3600)
    runtime.ledger.heartbeat(clock.now)
    page = samples(await scrape(client, KEY))
    assert sample(page, "vo_host_billed_seconds", state="active") == 3 * 3600
    assert sample(page, "vo_host_billed_seconds", state="cold") == 0
    assert sample(page, "vo_credits_grant_usd") == 100
    assert sample(page, "vo_credits_spent_usd") == 6
    assert sample(page, "vo_credits_remaining_usd") == 94
    # $6 in 3 h burns $48 a day: $94 lasts 94/48 days (the ledger says days to 0.01)
    runway = sample(page, "vo_credits_runway_seconds")
    assert runway == pytest.approx(94 / 48 * 86400, abs=864)
