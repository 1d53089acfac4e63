"""Leases against the hibernation ladder: random interleavings never unload an engine in use.

Fake engines at the Engine interface make hundreds of interleavings affordable; the real
engines are exercised in test_hibernation.py. Each step waits on an event (a lease granted,
the hibernation writer settled), so every generated interleaving really happens.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.core.idle import ORDER
from orchestrator.fleet.errors import WakeTimeout
from services.base import EngineState
from services.errors import EngineError
from tests.conftest import RuntimeFactory
from tests.fakes import ENGINES, FakeClock, FakeEngine, fake_runtime


@dataclass
class Request:
    names: list[str]
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    outcome: str = "pending"


operation = st.one_of(
    st.tuples(
        st.just("request"),
        st.lists(st.sampled_from(sorted(ENGINES)), min_size=1, max_size=3, unique=True),
        st.booleans(),
    ),
    st.tuples(st.just("release"), st.integers(0, 20)),
    st.tuples(st.just("tick"), st.floats(0, 4000)),
    st.tuples(st.just("force"), st.sampled_from(ORDER)),
    st.tuples(st.just("session"), st.sampled_from(["a", "b"]), st.booleans()),
)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    operations=st.lists(operation, min_size=1, max_size=40),
    failures=st.fixed_dictionaries({"tts": st.integers(0, 2)}),
)
def test_no_engine_is_unloaded_while_leased(
    tmp_path_factory: pytest.TempPathFactory, operations: list, failures: dict[str, int]
) -> None:
    asyncio.run(_scenario(tmp_path_factory.mktemp("leases"), operations, failures))


async def _scenario(tmp: Path, operations: list, failures: dict[str, int]) -> None:
    clock = FakeClock()
    runtime = fake_runtime(tmp, clock, failures)
    fleet, hibernator = runtime.fleet, runtime.hibernator
    hibernator.start()
    held: list[Request] = []
    tasks: list[asyncio.Task[None]] = []
    requests: list[Request] = []

    async def serve(request: Request) -> None:
        try:
            async with fleet.lease(request.names, timeout_s=5) as engines:
                fakes = [e for e in engines.values() if isinstance(e, FakeEngine)]
                for engine in fakes:
                    assert engine.state is EngineState.LOADED
                    engine.in_use += 1
                request.settled.set()
                await request.release.wait()
                for engine in fakes:
                    engine.in_use -= 1
                    # still loaded at the end of the request: nothing unloaded it under us
                    assert engine.state is EngineState.LOADED, engine.violations
            request.outcome = "served"
        except EngineError as exc:  # WakeTimeout included
            assert str(exc)  # a clear error, never an empty one
            request.outcome = "error"
        finally:
            request.settled.set()

    for op in operations:
        kind = op[0]
        if kind == "request":
            request = Request(op[1])
            requests.append(request)
            tasks.append(asyncio.create_task(serve(request)))
            if op[2]:  # wait until it holds its lease (or failed); else it races the next step
                await request.settled.wait()
            held.append(request)
        elif kind == "release" and held:
            held.pop(op[1] % len(held)).release.set()
        elif kind == "tick":
            clock.advance(op[1])
            hibernator.tick()
        elif kind == "force":
            await hibernator.force(op[1])
        elif kind == "session":
            (hibernator.session_opened if op[2] else hibernator.session_closed)(op[1])
        await hibernator.settled()
    for request in held:
        request.release.set()
    await asyncio.gather(*tasks)
    await runtime.stop()

    for name in ENGINES:
        engine = fleet.engine(name)
        assert isinstance(engine, FakeEngine)
        assert engine.violations == []
    assert all(r.outcome in ("served", "error") for r in requests)
    if not failures["tts"]:
        assert all(r.outcome == "served" for r in requests)


async def test_a_loaded_engine_is_granted_without_the_wake_budget(
    tmp_path: Path, make_runtime: RuntimeFactory
) -> None:
    """Only real loads wait on ``timeout_s``: a zero budget still grants a loaded engine."""
    runtime = fake_runtime(tmp_path, FakeClock(), failures={}, make=make_runtime)
    await runtime.fleet.load("asr")
    async with runtime.fleet.lease(["asr"], timeout_s=0) as engines:
        assert engines["asr"].state is EngineState.LOADED
    with pytest.raises(WakeTimeout) as caught:
        async with runtime.fleet.lease(["asr", "tts"], timeout_s=0):
            pass
    assert caught.value.loading == ["tts"]
