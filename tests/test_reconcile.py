"""A load that finishes in a state that keeps its role unloaded is undone at once.

The ladder can go down while a load is in flight (a pre-warm, an operator's load, a request
that gave up waiting): the transition can only record "already loading". When the load
completes, the hibernator (the one writer of the state, told by the fleet) unloads the role
again, unless a lease holds the engine or it is pinned. Fake engines whose load waits on an
event make every interleaving exact; nothing sleeps.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from orchestrator.app.runtime import Runtime
from orchestrator.core.idle import IdleState
from tests.conftest import RuntimeFactory
from tests.fakes import FakeClock, FakeEngine, fake_runtime


def held_load(runtime: Runtime, name: str) -> tuple[FakeEngine, asyncio.Event]:
    engine = runtime.fleet.engine(name)
    assert isinstance(engine, FakeEngine)
    engine.hold = asyncio.Event()
    return engine, engine.hold


def unload_actions(runtime: Runtime) -> list[tuple[str, bool, str]]:
    (record,) = runtime.store.transitions()[-1:]
    return [(a["target"], a["ok"], a["detail"]) for a in record.actions]


async def finish(runtime: Runtime, name: str, release: asyncio.Event) -> None:
    """Let the held load complete, and the hibernator act on it."""
    release.set()
    await runtime.fleet.load(name)  # joins the load in flight
    await runtime.hibernator.settled()


@pytest.fixture
async def runtime(tmp_path: Path, make_runtime: RuntimeFactory) -> Runtime:
    runtime = fake_runtime(tmp_path, FakeClock(), failures={}, make=make_runtime)
    runtime.hibernator.start()
    return runtime


async def test_a_prewarm_in_flight_when_cold_began_is_unloaded_when_it_lands(
    runtime: Runtime,
) -> None:
    engine, release = held_load(runtime, "asr")
    runtime.fleet.prewarm(["asr"])
    await engine.loading.wait()

    await runtime.hibernator.force(IdleState.COLD)
    assert ("asr", False, "already loading") in unload_actions(runtime)

    await finish(runtime, "asr", release)
    assert engine.state.value == "unloaded"
    assert (engine.loads, engine.unloads) == (1, 1)
    assert runtime.hibernator.state is IdleState.COLD  # reconciling is not activity
    reconciled = runtime.bus.recent("hibernation.reconciled")
    assert reconciled[-1].data["engine"] == "asr"
    assert ("asr", True) in [(a["target"], a["ok"]) for a in reconciled[-1].data["actions"]]


async def test_only_roles_the_state_unloads_are_reconciled(runtime: Runtime) -> None:
    """COOL unloads TTS (and duplex) only: an ASR load that lands in COOL stays."""
    asr, release_asr = held_load(runtime, "asr")
    tts, release_tts = held_load(runtime, "tts")
    runtime.fleet.prewarm(["asr", "tts"])
    await asr.loading.wait()
    await tts.loading.wait()
    await runtime.hibernator.force(IdleState.COOL)

    await finish(runtime, "asr", release_asr)
    await finish(runtime, "tts", release_tts)
    assert (asr.state.value, tts.state.value) == ("loaded", "unloaded")


async def test_a_pinned_engine_landing_in_cold_stays(runtime: Runtime) -> None:
    engine, release = held_load(runtime, "asr")
    runtime.pin("asr", True)
    runtime.fleet.prewarm(["asr"])
    await engine.loading.wait()
    await runtime.hibernator.force(IdleState.COLD)
    await finish(runtime, "asr", release)
    assert engine.state.value == "loaded" and engine.unloads == 0


async def test_an_operator_load_in_cold_stays_until_the_next_transition(runtime: Runtime) -> None:
    """An operator who loads an engine while the stack is cold means it: the load is kept (the
    pre-warm above, in the same state, is undone); the ladder's next step unloads it as usual."""
    await runtime.hibernator.force(IdleState.COLD)
    engine = runtime.fleet.engine("asr")
    assert isinstance(engine, FakeEngine)
    await runtime.fleet.load("asr", by_operator=True)
    await runtime.hibernator.settled()
    assert engine.state.value == "loaded" and engine.unloads == 0

    await runtime.hibernator.force(IdleState.DORMANT)
    assert engine.state.value == "unloaded" and engine.unloads == 1


async def test_a_load_a_request_waits_for_is_never_undone(runtime: Runtime) -> None:
    """The ladder forced down while a request waits for its engine: the load lands, the
    request gets it loaded, and it is not unloaded under the request."""
    engine, release = held_load(runtime, "asr")
    granted = asyncio.Event()
    done = asyncio.Event()

    async def request() -> None:
        async with runtime.fleet.lease(["asr"]) as engines:
            assert engines["asr"].state.value == "loaded"
            granted.set()
            await done.wait()
            assert engines["asr"].state.value == "loaded"

    task = asyncio.create_task(request())
    await engine.loading.wait()
    await runtime.hibernator.force(IdleState.COLD)
    assert ("asr", False, "in use by 1 request(s)") in unload_actions(runtime)
    release.set()
    await granted.wait()
    await runtime.hibernator.settled()
    assert engine.state.value == "loaded" and engine.unloads == 0
    done.set()
    await task
    assert engine.violations == []


async def test_a_load_whose_request_went_away_is_undone_in_cold(runtime: Runtime) -> None:
    """A request that stopped waiting (a client that hung up) leaves the load going; it lands
    after the ladder went down, with no lease on it."""
    engine, release = held_load(runtime, "asr")

    async def request() -> None:
        async with runtime.fleet.lease(["asr"]):
            raise AssertionError("the request went away before its engine was up")

    task = asyncio.create_task(request())
    await engine.loading.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await runtime.hibernator.force(IdleState.COLD)
    assert ("asr", False, "already loading") in unload_actions(runtime)
    await finish(runtime, "asr", release)
    assert engine.state.value == "unloaded" and engine.unloads == 1
