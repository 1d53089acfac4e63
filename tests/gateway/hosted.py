"""A host controller on the scripted provider, started and closed around a test, with the
config the ledger, ``status`` and the gateway console read (prices, a state folder)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.config import AppConfig, load_config
from orchestrator.gateway.controller import HostController
from orchestrator.gateway.lifecycle import HostState
from orchestrator.gateway.store import GatewayStore
from tests.gateway.scripted_provider import Clock, ScriptedProbe, ScriptedProvider

START = datetime(2025, 3, 15, 9, 0, tzinfo=UTC).timestamp()  # a Saturday morning, UTC


def gateway_config(state_dir: Path, extra: str = "") -> AppConfig:
    """The configuration a gateway loads (the cpu profile: the gateway VM has no GPU), with
    ``extra`` TOML appended (tables after ``[gateway]``)."""
    toml = state_dir / "gateway.toml"
    toml.write_text(
        f"""
[state]
dir = "{state_dir}"

[costs]
gpu_type = "l4-24gb"
usd_per_hour = 2.0
credits_usd = 300.0
credits_start = 2025-03-01

[gateway]
poll_s = 0.01
stop_after_s = 600
drain_s = 30
hold_s = 5
usd_per_hour = 0.5
"""
        + extra,
        encoding="utf-8",
    )
    return load_config(profile="cpu", config_file=toml, environ={})


@contextlib.asynccontextmanager
async def hosted(
    config: AppConfig, provider: ScriptedProvider, clock: Clock
) -> AsyncIterator[HostController]:
    """A started controller whose history lives in ``config.state.dir``."""
    store = GatewayStore.in_dir(config.state.dir)
    controller = HostController(
        provider,
        config.gateway,
        store,
        host_key="host-key",
        probe=ScriptedProbe(provider),
        clock=clock,
    )
    await controller.start()
    try:
        yield controller
    finally:
        await controller.close()
        store.close()


def seed_visits(state_dir: Path, visits: list[tuple[float, float]]) -> None:
    """Sessions (start, end) stored in the gateway's history before a test starts it."""
    store = GatewayStore.in_dir(state_dir)
    try:
        for start, end in visits:
            store.add_visit(start, end)
    finally:
        store.close()


async def reach(controller: HostController, state: HostState) -> None:
    """Wait for the controller to be in ``state`` (on its events, with a generous bound)."""
    with controller.subscribe() as events:
        while controller.snapshot().state is not state:
            await asyncio.wait_for(events.queue.get(), 10)


async def wake_in(
    controller: HostController, provider: ScriptedProvider, clock: Clock, seconds: float
) -> None:
    """Start the host and make it ready ``seconds`` (of the test's clock) after the ask."""
    provider.start_gate = asyncio.Event()
    await controller.wake("test")
    await reach(controller, HostState.STARTING)
    clock.advance(seconds)
    provider.start_gate.set()
    await reach(controller, HostState.READY)
    provider.start_gate = None
