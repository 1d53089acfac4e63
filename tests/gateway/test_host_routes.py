"""The gateway's own routes: the host's state, its event stream, wake, and health.

The gate is scripted (the test moves the host); the host behind it is the real orchestrator
API on the tiny engines, which none of these routes may touch.
"""

from __future__ import annotations

import json

import aiohttp

from orchestrator.config import AppConfig
from orchestrator.gateway.lifecycle import HostState
from tests.gateway.clients import AUTH
from tests.gateway.conftest import StackFactory


async def block(content: aiohttp.StreamReader) -> list[str]:
    """The next server-sent block (its lines, without the blank line that ends it)."""
    lines = []
    while (line := (await content.readline()).decode()) not in ("\n", ""):
        lines.append(line.rstrip("\n"))
    return lines


async def next_host_event(content: aiohttp.StreamReader) -> dict[str, object]:
    while True:
        lines = await block(content)
        if lines and lines[0] == "event: host":
            assert lines[1].startswith("data: ")
            data: dict[str, object] = json.loads(lines[1].removeprefix("data: "))
            return data


async def test_the_host_s_state_and_its_transitions_as_they_happen(
    make_stack: StackFactory, tiny_config: AppConfig
) -> None:
    stack = await make_stack(tiny_config)
    gate = stack.gate
    async with aiohttp.ClientSession() as http:
        async with http.get(stack.url + "/v1/host", headers=AUTH) as host:
            assert host.status == 200
            snapshot = await host.json()
        assert snapshot == gate.snapshot().to_json() and snapshot["state"] == "stopped"
        async with http.get(stack.url + "/v1/host/events", headers=AUTH) as events:
            assert events.headers["Content-Type"] == "text/event-stream"
            assert (await next_host_event(events.content))["state"] == "stopped"  # now
            gate.move(HostState.BOOTING, "provider says running")
            moved = await next_host_event(events.content)
            assert (moved["state"], moved["cause"]) == ("booting", "provider says running")
            while await block(events.content) != [": heartbeat"]:
                pass  # a quiet stream still says something (every 0.05 s in these tests)
            await stack.gateway.close()
            await events.content.read()  # the stream ends cleanly on shutdown
            assert events.content.at_eof()
    assert gate.uses == [] and gate.ready_calls == 0  # watching is not using


async def test_wake_is_202_with_the_snapshot_however_often(
    make_stack: StackFactory, tiny_config: AppConfig
) -> None:
    stack = await make_stack(tiny_config)
    async with aiohttp.ClientSession() as http:
        bodies = []
        for _ in range(2):
            async with http.post(stack.url + "/v1/wake", headers=AUTH) as response:
                assert response.status == 202
                bodies.append(await response.json())
        async with http.get(stack.url + "/v1/host", headers=AUTH) as host:
            assert (await host.json())["state"] == "starting"
    assert [b["state"] for b in bodies] == ["starting", "starting"]
    assert stack.gate.wakes == ["app", "app"]
    assert stack.gate.uses == []  # a wake is not a request the host serves


async def test_health_live_needs_no_key_and_health_shows_the_host(
    make_stack: StackFactory, tiny_config: AppConfig
) -> None:
    stack = await make_stack(tiny_config, ready=True)
    async with aiohttp.ClientSession() as http:
        async with http.get(stack.url + "/health/live") as live:
            assert live.status == 200 and await live.json() == {"status": "alive"}
        async with http.get(stack.url + "/health") as no_key:
            assert no_key.status == 401
        async with http.get(stack.url + "/health", headers=AUTH) as health:
            body = await health.json()
    assert body["status"] == "ok" and body["sessions"] == 0
    assert body["host"]["state"] == "ready" and body["uptime_s"] >= 0
