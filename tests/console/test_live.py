"""The live stream: fragments on connect, a fresh update after each bus event, silence when
nothing happens, and every open stream ended when the console shuts down."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import ClientResponse

from console.context import CONSOLE
from console.recorder import step
from orchestrator.app.runtime import Runtime
from orchestrator.core.idle import IdleState
from tests.console.conftest import Client


async def next_message(stream: ClientResponse, timeout: float = 5.0) -> tuple[str, Any]:
    """The next event (kind, data), skipping comments and the retry hint."""
    while True:
        async with asyncio.timeout(timeout):
            block = (await stream.content.readuntil(b"\n\n")).decode()
        fields = dict(line.split(": ", 1) for line in block.strip().splitlines() if ": " in line)
        if "event" in fields:
            return fields["event"], json.loads(fields["data"])


async def until_update(stream: ClientResponse) -> dict[str, Any]:
    while True:
        kind, data = await next_message(stream)
        if kind == "update":
            return dict(data)


async def test_a_stream_opens_with_the_page_fragments(client: Client, csrf: dict[str, str]) -> None:
    stream = await client.get("/events?view=engines")
    assert stream.status == 200
    assert stream.headers["Content-Type"] == "text/event-stream"
    update = await until_update(stream)
    assert set(update["fragments"]) == {"status", "engine_table"}
    assert 'data-engine="asr" data-state="unloaded"' in update["fragments"]["engine_table"]
    assert update["state"] == "active"
    assert update["engines"] == {"asr": "unloaded", "tts": "unloaded"}
    assert (await client.get("/events?view=nope")).status == 404
    stream.close()


async def test_actions_reach_open_streams_without_a_reload(
    client: Client, csrf: dict[str, str], runtime: Runtime
) -> None:
    stream = await client.get("/events?view=hibernation")
    await until_update(stream)
    response = await client.post("/api/hibernation/hibernate", json={"state": "cold"}, headers=csrf)
    assert response.status == 200
    kinds: list[str] = []
    while True:
        kind, data = await next_message(stream)
        kinds.append(data["type"] if kind == "bus" else kind)
        if kind == "update" and "audit" in kinds:
            break
    assert kinds[0] == "hibernation.transition"
    assert data["state"] == "cold"
    assert 'class="step current" data-state="cold"' in data["fragments"]["ladder"]
    assert "active → cold" in data["fragments"]["timeline"]

    # a cold stack unloads what loads without a lease at once, unless it is pinned
    await client.post("/api/engines/tts/pin", json={"pinned": True}, headers=csrf)
    await client.post("/api/engines/tts/load", json={}, headers=csrf)
    while (update := await until_update(stream))["engines"]["tts"] != "loaded":
        pass
    assert 'data-state="cold"' in update["fragments"]["status"]  # the header badge
    stream.close()


async def test_a_quiet_server_sends_nothing(client: Client, csrf: dict[str, str]) -> None:
    """No polling: with no bus event, the stream stays silent (keep-alives come every 25 s)."""
    stream = await client.get("/events?view=overview")
    await until_update(stream)
    try:
        async with asyncio.timeout(0.5):
            extra = await stream.content.readuntil(b"\n\n")
    except TimeoutError:
        extra = b""
    assert extra == b""
    stream.close()


async def test_server_side_changes_are_pushed_too(
    client: Client, csrf: dict[str, str], runtime: Runtime
) -> None:
    """A transition the ladder makes by itself (here a forced one) reaches the browser."""
    stream = await client.get("/events?view=overview")
    await until_update(stream)
    await runtime.hibernator.force(IdleState.DORMANT, cause="test")
    while (update := await until_update(stream))["state"] != "dormant":
        pass
    assert 'class="step current" data-state="dormant"' in update["fragments"]["ladder"]
    stream.close()


async def test_shutdown_ends_open_streams(client: Client, csrf: dict[str, str]) -> None:
    streams = [await client.get(f"/events?view={view}") for view in ("overview", "audit")]
    for stream in streams:
        await until_update(stream)
    assert len(client.app[CONSOLE].streams) == 2
    await client.app.shutdown()  # what the runner does first when the server stops
    for stream in streams:
        async with asyncio.timeout(5):
            rest = await stream.content.read()
        assert rest == b""  # ended cleanly, nothing more
    assert len(client.app[CONSOLE].streams) == 0


async def test_engine_state_changes_made_elsewhere_arrive(
    client: Client, csrf: dict[str, str], runtime: Runtime
) -> None:
    """The fleet announces every load and unload (``engine.state``): no polling needed."""
    stream = await client.get("/events?view=engines")
    await until_update(stream)
    await runtime.fleet.load("asr")  # not through the console
    seen: list[str] = []
    while True:
        kind, data = await next_message(stream)
        if kind == "bus" and data["type"] == "engine.state":
            seen.append(data["data"]["state"])
        if kind == "update" and data["engines"]["asr"] == "loaded":
            break
    assert seen == ["loading", "loaded"]
    assert 'data-engine="asr" data-state="loaded"' in data["fragments"]["engine_table"]
    await runtime.fleet.unload("asr")
    while (await until_update(stream))["engines"]["asr"] != "unloaded":
        pass
    stream.close()


async def test_chart_points_go_to_overview_pages_only(
    client: Client, csrf: dict[str, str], runtime: Runtime
) -> None:
    overview = await client.get("/events?view=overview")
    engines = await client.get("/events?view=engines")
    for stream in (overview, engines):
        await until_update(stream)
    runtime.gpu_sampler.sample_once()
    step(runtime, client.app[CONSOLE].history)
    kind, point = await next_message(overview)
    assert kind == "history"  # a point alone: nothing re-rendered
    assert point["vram_total_bytes"] == 24576 * 1024**2
    try:
        async with asyncio.timeout(0.3):
            extra = await engines.content.readuntil(b"\n\n")
    except TimeoutError:
        extra = b""
    assert extra == b""
    overview.close()
    engines.close()
