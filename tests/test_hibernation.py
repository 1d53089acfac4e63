"""The hibernation ladder with real engines: memory really drops and comes back; state persists.

A fake clock drives the ladder; the engines are the tiny real faster-whisper and Piper models
(the recogniser made heavy enough, ~36 MB of float32 weights, for its release to be measured).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from console.app import create_console_app
from orchestrator.api.app import create_api_app
from orchestrator.config import AppConfig, load_config
from orchestrator.core.events import Event, Subscription
from orchestrator.core.idle import IdleState
from orchestrator.fleet.errors import WakeTimeout
from orchestrator.hibernation.host_power import SimulatedHost
from tests.conftest import RuntimeFactory, tiny_profile_toml
from tests.fakes import FakeClock
from tests.helpers import basic

MB = 1_000_000


@pytest.fixture
def config(tmp_path: Path, heavy_whisper_dir: Path, tiny_piper_onnx: Path) -> AppConfig:
    text = tiny_profile_toml(heavy_whisper_dir, tiny_piper_onnx, tmp_path)
    text = text.replace('compute_type = "int8"', 'compute_type = "float32"')
    path = tmp_path / "heavy.toml"
    path.write_text(text)
    return load_config(config_file=path, environ={})


class Harness:
    def __init__(self, make_runtime: RuntimeFactory, config: AppConfig) -> None:
        self.clock = FakeClock()
        self.host = SimulatedHost()
        self.runtime = make_runtime(config, clock=self.clock, host=self.host)
        self.hibernator = self.runtime.hibernator
        self.fleet = self.runtime.fleet

    async def idle(self, seconds: float) -> None:
        """Let ``seconds`` of idle time pass and have the ladder act on it."""
        self.clock.advance(seconds)
        self.hibernator.tick()
        await self.hibernator.settled()

    async def use(self, *names: str) -> None:
        async with self.fleet.lease(list(names)):
            pass
        await self.hibernator.settled()

    def state_of(self, name: str) -> str:
        return self.fleet.engine(name).state.value


@pytest.fixture
async def harness(make_runtime: RuntimeFactory, config: AppConfig) -> Harness:
    harness = Harness(make_runtime, config)
    harness.hibernator.start()
    return harness


async def test_cool_then_cold_unload_by_role_and_memory_drops(harness: Harness) -> None:
    await harness.use("asr", "tts")
    assert harness.state_of("asr") == harness.state_of("tts") == "loaded"

    await harness.idle(31)
    assert harness.hibernator.state is IdleState.WARM
    assert harness.state_of("tts") == "loaded"  # WARM unloads nothing

    await harness.idle(270)
    assert harness.hibernator.state is IdleState.COOL
    assert (harness.state_of("asr"), harness.state_of("tts")) == ("loaded", "unloaded")

    await harness.idle(1500)
    assert harness.hibernator.state is IdleState.COLD
    assert harness.state_of("asr") == "unloaded"

    history = harness.runtime.store.transitions()
    assert [(t.source, t.target) for t in history] == [
        ("active", "warm"),
        ("warm", "cool"),
        ("cool", "cold"),
    ]
    cool, cold = history[1], history[2]
    assert [(a["action"], a["target"], a["ok"]) for a in cool.actions] == [("unload", "tts", True)]
    assert ("unload", "asr", True) in [(a["action"], a["target"], a["ok"]) for a in cold.actions]
    # RSS shows what the allocator gave back, not all the engine held (23.6 MB of the ASR's
    # ~30 MB in one CI run): a clear drop, with room for the allocator's keep
    freed = cold.memory_before["rss_bytes"] - cold.memory_after["rss_bytes"]
    assert freed > 10 * MB, f"COLD freed only {freed / MB:.1f} MB of RSS"
    assert cold.memory_before["engines"]["asr"]["ram_bytes"] > 25 * MB
    assert cold.memory_after["engines"]["asr"]["ram_bytes"] is None

    # a request wakes the stack and the memory comes back
    asleep = cold.memory_after["rss_bytes"]
    await harness.use("asr", "tts")
    assert harness.hibernator.state is IdleState.ACTIVE
    awake = await harness.fleet.memory_snapshot()
    assert awake["rss_bytes"] - asleep > 10 * MB
    assert harness.runtime.store.transitions()[-1].cause == "activity"


async def test_waking_from_cold_loads_in_parallel_in_need_order(harness: Harness) -> None:
    await harness.hibernator.force(IdleState.COLD)
    told: list[list[str]] = []
    async with harness.fleet.lease(["asr", "tts"], on_waking=told.append):
        pass
    assert told == [["asr", "tts"]]
    (asr,) = harness.fleet.load_spans("asr")
    (tts,) = harness.fleet.load_spans("tts")
    assert asr.started <= tts.started  # started in the order the request needs them
    assert asr.started < tts.ended and tts.started < asr.ended  # and they overlapped


async def test_wake_timeout_is_a_clear_error_and_loading_goes_on(harness: Harness) -> None:
    with pytest.raises(WakeTimeout) as caught:
        async with harness.fleet.lease(["asr", "tts"], timeout_s=0.001):
            pytest.fail("must not be served before the engines are up")
    assert set(caught.value.loading) <= {"asr", "tts"}
    assert caught.value.retry_after_s == 1  # max(1, round(0.001 s / 2)): the shortest retry
    await harness.fleet.load("asr")
    await harness.fleet.load("tts")
    assert harness.state_of("asr") == harness.state_of("tts") == "loaded"


async def test_leased_and_pinned_engines_survive_hibernation(harness: Harness) -> None:
    harness.runtime.pin("asr", True)
    async with harness.fleet.lease(["tts"]):
        await harness.fleet.load("asr")
        await harness.hibernator.force(IdleState.COLD)
        assert harness.state_of("tts") == "loaded"
    assert harness.state_of("asr") == "loaded"
    actions = {a["target"]: a for a in harness.runtime.store.transitions()[-1].actions}
    assert actions["asr"]["detail"] == "pinned"
    assert actions["tts"]["detail"].startswith("in use by 1")
    assert not actions["tts"]["ok"]


async def test_dormant_runs_the_host_power_action(harness: Harness) -> None:
    await harness.idle(7300)
    assert harness.hibernator.state is IdleState.DORMANT
    assert harness.host.calls == ["off"]
    actions = harness.runtime.store.transitions()[-1].actions
    assert {"action": "host_power_off", "target": "simulated", "ok": True}.items() <= actions[
        -1
    ].items()


async def test_open_session_and_keep_awake_hold_the_ladder(harness: Harness) -> None:
    harness.hibernator.session_opened("lesson-1")
    await harness.idle(10_000)
    assert harness.hibernator.state is IdleState.ACTIVE
    harness.hibernator.session_closed("lesson-1")
    await harness.hibernator.keep_awake(3600)
    await harness.idle(3599)
    assert harness.hibernator.state is IdleState.ACTIVE
    await harness.idle(31)
    assert harness.hibernator.state is IdleState.WARM


async def test_transitions_are_published(harness: Harness) -> None:
    with harness.runtime.bus.subscribe() as events:
        await harness.idle(400)
        event = events.queue.get_nowait()
    assert event.type == "hibernation.transition"
    assert (event.data["source"], event.data["target"]) == ("active", "cool")


async def test_state_history_and_pins_survive_a_restart(
    make_runtime: RuntimeFactory, config: AppConfig
) -> None:
    first = Harness(make_runtime, config)
    first.hibernator.start()
    first.runtime.pin("tts", True)
    await first.hibernator.force(IdleState.COLD)
    await make_runtime.stop(first.runtime)  # the restart: what stop saved is all there is

    second = Harness(make_runtime, config)
    assert second.hibernator.state is IdleState.COLD
    assert second.fleet.pinned() == ["tts"]
    assert [t.target for t in second.runtime.store.transitions()] == ["cold"]
    second.runtime.start(tick=False)
    await second.fleet.wait_prepared()
    # asleep before the restart: nothing is preloaded until a request comes
    assert second.state_of("asr") == second.state_of("tts") == "unloaded"


Client = Any


async def test_health_and_console_reads_never_count_as_activity(
    harness: Harness, aiohttp_client: Client, auth: dict[str, str]
) -> None:
    api: TestClient[Any, Any] = await aiohttp_client(create_api_app(harness.runtime))
    console: TestClient[Any, Any] = await aiohttp_client(create_console_app(harness.runtime))
    from tests.conftest import CONSOLE_PASSWORD

    for _ in range(3):
        harness.clock.advance(20)
        for path in ("/health", "/health/ready", "/metrics", "/health/live"):
            assert (await api.get(path, headers=auth)).status == 200  # unloaded, loadable: ready
        assert (await console.get("/", headers=basic("admin", CONSOLE_PASSWORD))).status == 200
        harness.hibernator.tick()
        await harness.hibernator.settled()
    assert harness.hibernator.state is IdleState.WARM  # 60 s of reads: idle all along
    body = await (await api.get("/health", headers=auth)).json()
    assert body["hibernation"]["state"] == "warm"
    assert body["hibernation"]["idle_s"] == 60
    await harness.use("asr")  # a data-path lease is activity
    assert harness.hibernator.state is IdleState.ACTIVE


async def _next_transition(events: Subscription) -> Event:
    """The first ladder transition (engine loads publish their own events meanwhile)."""
    while (event := await events.queue.get()).type != "hibernation.transition":
        pass
    return event


async def test_the_scheduler_ticks_the_ladder(
    make_runtime: RuntimeFactory, config: AppConfig
) -> None:
    fast = config.model_copy(
        update={
            "hibernation": config.hibernation.model_copy(
                update={"warm_after_s": 0.05, "tick_s": 0.02}
            )
        }
    )
    runtime = make_runtime(fast, host=SimulatedHost())
    with runtime.bus.subscribe() as events:
        runtime.start(tick=True)
        event = await asyncio.wait_for(_next_transition(events), timeout=30)
    assert event.data["target"] == "warm"
    assert event.data["cause"].startswith("idle")


_ = web  # the aiohttp test client fixtures come from pytest-aiohttp
