"""The host controller against a scripted provider: starts, holds, failures, idle stops,
adoption after a gateway restart. Time that matters to the policy is a clock the test moves;
the writer is waited on (``settle``), never slept on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from orchestrator.config.gateway import GatewayConfig
from orchestrator.gateway.controller import HostController
from orchestrator.gateway.errors import HostStartFailed, HostWaking
from orchestrator.gateway.lifecycle import HostState
from orchestrator.gateway.providers.base import PowerState
from orchestrator.gateway.store import GatewayStore, HostTransition
from tests.gateway.hosted import reach
from tests.gateway.scripted_provider import Clock, ScriptedProbe, ScriptedProvider

CONFIG = GatewayConfig(
    poll_s=0.01, stop_after_s=600, drain_s=30, backoff_s=60, backoff_max_s=600, hold_s=5
)

Make = Callable[..., HostController]


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Make]:
    made: list[tuple[HostController, GatewayStore]] = []

    def build(
        provider: ScriptedProvider,
        clock: Clock,
        *,
        probe: ScriptedProbe | None = None,
        config: GatewayConfig = CONFIG,
    ) -> HostController:
        store = GatewayStore.in_dir(tmp_path)
        controller = HostController(
            provider,
            config,
            store,
            host_key="host-key",
            probe=probe or ScriptedProbe(provider),
            clock=clock,
        )
        made.append((controller, store))
        return controller

    yield build
    for controller, store in made:
        await controller.close()
        store.close()


def targets(controller: HostController) -> list[str]:
    return [t.target for t in controller.transitions()]


async def test_concurrent_requests_start_the_host_once_and_all_get_its_url(make: Make) -> None:
    provider, clock = ScriptedProvider(start_gate=asyncio.Event()), Clock()
    controller = make(provider, clock)
    await controller.start()
    waiters = [asyncio.create_task(controller.ready_url(5)) for _ in range(5)]
    await reach(controller, HostState.STARTING)
    clock.advance(42)
    assert provider.start_gate is not None
    provider.start_gate.set()
    urls = await asyncio.gather(*waiters)
    assert urls == [provider.url] * 5
    assert provider.starts == 1
    assert targets(controller) == ["stopped", "starting", "booting", "ready"]
    assert controller.expected_start() == (42.0, 42.0)  # the measured start, not the default


async def test_a_request_not_served_within_its_hold_gets_the_state_and_eta(make: Make) -> None:
    provider, clock = ScriptedProvider(), Clock()
    probe = ScriptedProbe(provider, ready=False)  # the machine runs, its server never answers
    controller = make(provider, clock, probe=probe)
    await controller.start()
    with pytest.raises(HostWaking) as caught:
        await controller.ready_url(0.05)
    assert caught.value.state == "booting"
    assert caught.value.eta_s == pytest.approx(CONFIG.default_eta_s)
    assert caught.value.retry_after_s is not None and caught.value.retry_after_s >= 1


async def test_a_stockout_fails_with_its_reason_and_backs_off(make: Make) -> None:
    provider = ScriptedProvider(fail_starts=["ZONE_RESOURCE_POOL_EXHAUSTED in zone-a"])
    clock = Clock()
    controller = make(provider, clock)
    await controller.start()
    with controller.use("request"), pytest.raises(HostStartFailed) as caught:
        await controller.ready_url(5)
    assert "ZONE_RESOURCE_POOL_EXHAUSTED" in caught.value.reason
    assert caught.value.retry_after_s == 60
    snapshot = controller.snapshot()
    assert snapshot.state is HostState.FAILED
    assert snapshot.retry_at == clock.now + 60
    # within the backoff: refused at once, the provider is not asked again
    with pytest.raises(HostStartFailed):
        await controller.ready_url(5)
    await controller.settle()
    assert provider.starts == 1
    # after it: the next request starts the host again, and the backoff resets on success
    clock.advance(61)
    assert await controller.ready_url(5) == provider.url
    assert provider.starts == 2
    assert controller.snapshot().last_failure is None


async def test_backoff_doubles_with_each_failure_up_to_its_cap(make: Make) -> None:
    provider = ScriptedProvider(fail_starts=["no capacity"] * 5)
    clock = Clock()
    controller = make(provider, clock, config=CONFIG.model_copy(update={"backoff_max_s": 150}))
    await controller.start()
    waits = []
    for _ in range(3):
        with pytest.raises(HostStartFailed) as caught:
            await controller.ready_url(5)
        waits.append(caught.value.retry_after_s)
        clock.advance(1000)
    assert waits == [60, 120, 150]


async def test_idle_host_drains_then_stops_and_a_request_cancels_the_drain(make: Make) -> None:
    provider, clock = ScriptedProvider(), Clock()
    controller = make(provider, clock)
    await controller.start()
    await controller.ready_url(5)
    clock.advance(CONFIG.stop_after_s + 1)
    await controller.settle()
    assert controller.snapshot().state is HostState.DRAINING
    with controller.use("request"):
        await controller.settle()
        assert controller.snapshot().state is HostState.READY
    clock.advance(CONFIG.stop_after_s + 1)
    await controller.settle()
    clock.advance(CONFIG.drain_s + 1)
    await controller.settle()
    assert controller.snapshot().state is HostState.STOPPED
    assert provider.stops == 1 and provider.state is PowerState.STOPPED
    assert targets(controller)[-4:] == ["ready", "draining", "stopping", "stopped"]


async def test_an_open_session_keeps_the_host_up_however_long(make: Make) -> None:
    provider, clock = ScriptedProvider(), Clock()
    controller = make(provider, clock)
    await controller.start()
    await controller.ready_url(5)
    with controller.use("session"):
        for _ in range(5):
            clock.advance(10 * CONFIG.stop_after_s)
            await controller.settle()
            assert controller.snapshot().state is HostState.READY
    assert provider.stops == 0


async def test_a_start_asked_while_the_host_stops_waits_then_starts(make: Make) -> None:
    provider, clock = ScriptedProvider(stop_gate=asyncio.Event()), Clock()
    controller = make(provider, clock)
    await controller.start()
    await controller.ready_url(5)
    stopping = asyncio.create_task(controller.stop("operator"))
    await reach(controller, HostState.STOPPING)
    waiter = asyncio.create_task(controller.ready_url(5))
    await asyncio.sleep(0)
    assert provider.starts == 1  # not started again while it stops
    assert provider.stop_gate is not None
    provider.stop_gate.set()
    assert await waiter == provider.url
    await stopping
    assert provider.starts == 2
    assert targets(controller)[-5:] == ["stopping", "stopped", "starting", "booting", "ready"]


async def test_a_preempted_host_is_seen_stopped_and_the_next_request_starts_it(
    make: Make,
) -> None:
    provider, clock = ScriptedProvider(), Clock()
    controller = make(provider, clock)
    await controller.start()
    await controller.ready_url(5)
    provider.preempt()
    controller.host_lost("the Realtime socket to the host dropped")
    await controller.settle()
    snapshot = controller.snapshot()
    assert snapshot.state is HostState.STOPPED
    assert "preempted" in snapshot.cause and "socket to the host dropped" in snapshot.cause
    assert await controller.ready_url(5) == provider.url
    assert provider.starts == 2


async def test_a_host_that_never_answers_fails_after_the_start_timeout_and_is_stopped(
    make: Make,
) -> None:
    provider, clock = ScriptedProvider(), Clock()
    probe = ScriptedProbe(provider, ready=False)
    controller = make(provider, clock, probe=probe)
    await controller.start()
    await controller.wake("app")
    await controller.settle()
    assert controller.snapshot().state is HostState.BOOTING
    clock.advance(CONFIG.start_timeout_s + 1)
    await controller.settle()
    snapshot = controller.snapshot()
    assert snapshot.state is HostState.FAILED
    assert "not ready" in (snapshot.last_failure or "")
    assert provider.stops == 1  # a host that never came up is not left running on the bill
    assert controller.transitions()[-1].power == "stopped"  # so the ledger stops billing there


async def test_a_restarted_gateway_carries_on_a_boot_and_measures_it_from_the_start(
    make: Make,
) -> None:
    provider, clock = ScriptedProvider(), Clock()
    probe = ScriptedProbe(provider, ready=False)
    first = make(provider, clock, probe=probe)
    await first.start()
    await first.wake("app")
    await first.settle()
    assert first.snapshot().state is HostState.BOOTING
    started_at = first.transitions()[-2].at
    await first.close()  # the gateway dies; the host keeps booting

    clock.advance(30)
    second = make(provider, clock, probe=probe)
    await second.start()
    assert second.snapshot().state is HostState.BOOTING
    assert provider.starts == 1  # adopted, not started again
    clock.advance(20)
    probe.ready = True
    assert await second.ready_url(5) == provider.url
    assert second.expected_start()[0] == pytest.approx(clock.now - started_at)


async def test_a_gateway_started_beside_a_ready_host_adopts_it(make: Make) -> None:
    provider, clock = ScriptedProvider(state=PowerState.RUNNING), Clock()
    controller = make(provider, clock)
    await controller.start()
    assert controller.snapshot().state is HostState.READY
    assert await controller.ready_url(1) == provider.url
    assert provider.starts == 0


async def test_every_transition_is_published_with_its_snapshot(make: Make) -> None:
    provider, clock = ScriptedProvider(), Clock()
    controller = make(provider, clock)
    await controller.start()
    with controller.subscribe() as events:
        await controller.ready_url(5)
        seen = [events.queue.get_nowait() for _ in range(events.queue.qsize())]
    assert [e.data["state"] for e in seen] == ["starting", "booting", "ready"]
    assert seen[-1].data["eta_s"] == 0.0 and seen[-1].data["progress"] == 1.0


def test_the_store_keeps_transitions_across_opens(tmp_path: Path) -> None:
    store = GatewayStore.in_dir(tmp_path)
    store.add_transition(HostTransition(1.0, "stopped", "starting", "app", "a/b", "stopped"))
    store.add_start(2.0, 33.0, "a/b")
    store.close()
    again = GatewayStore.in_dir(tmp_path)
    assert again.transitions()[0].target == "starting"
    assert again.start_durations() == [33.0]
    assert (tmp_path / "gateway.db").stat().st_mode & 0o777 == 0o600
    again.close()
