"""Parking through the fleet and the ladder: COOL parks what can park and unloads the rest, a
lease resumes a parked engine, COLD unloads it, host RAM is counted, /health shows it.

Fakes (``ParkingFakeEngine`` parks; ``FakeEngine`` cannot) drive the logic fast; the last test
runs the ladder on the heavy tiny Whisper, where RSS shows the weights kept while parked.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from orchestrator.api.app import create_api_app
from orchestrator.app.runtime import Runtime
from orchestrator.config import AppConfig, load_config
from orchestrator.core.idle import IdleState
from orchestrator.core.metrics import Metrics
from orchestrator.fleet.fleet import Fleet
from orchestrator.gpu.catalog import load_catalog
from orchestrator.gpu.host_ram import HostRam, moved_when_parked, park_refusal
from orchestrator.gpu.placement import GIB, MIB
from orchestrator.hibernation.host_power import SimulatedHost
from services import measure
from services.base import Engine, EngineState, Role
from tests.conftest import RuntimeFactory, tiny_profile_toml
from tests.fakes import FakeClock, FakeEngine, ParkingFakeEngine

MB = 1_000_000
COOL_PARKS_BOTH = """
[hibernation.actions.cool]
park_roles = ["asr", "tts"]
"""


def config_file(tmp: Path, extra: str = COOL_PARKS_BOTH, device: str = "cpu") -> AppConfig:
    path = tmp / "park.toml"
    path.write_text(
        f"""
profile = "cpu"
[state]
dir = "{tmp / "state"}"
[models]
auto_download = false
[engines.asr]
role = "asr"
adapter = "faster-whisper"
model = "/nonexistent/whisper"
device = "{device}"
estimate_vram_mb = 4000
[engines.tts]
role = "tts"
adapter = "piper"
model = "/nonexistent/voice.onnx"
[engines.vad]
enabled = false
[engines.llm]
enabled = false
"""
        + extra
    )
    return load_config(config_file=path, environ={})


class Ladder:
    def __init__(self, make: RuntimeFactory, config: AppConfig) -> None:
        self.clock = FakeClock()
        self.asr = ParkingFakeEngine("asr", Role.ASR)
        self.tts = FakeEngine("tts", Role.TTS)
        engines: dict[str, Engine] = {"asr": self.asr, "tts": self.tts}
        self.runtime: Runtime = make(
            config, clock=self.clock, host=SimulatedHost(), engines=engines, writer=True
        )

    async def idle(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.runtime.hibernator.tick()
        await self.runtime.hibernator.settled()

    async def use(self, *names: str) -> None:
        async with self.runtime.fleet.lease(list(names)):
            pass
        await self.runtime.hibernator.settled()

    def actions(self) -> set[tuple[str, str, bool]]:
        record = self.runtime.store.transitions()[-1]
        return {(a["action"], a["target"], a["ok"]) for a in record.actions}


@pytest.fixture
async def ladder(make_runtime: RuntimeFactory, tmp_path: Path) -> Ladder:
    return Ladder(make_runtime, config_file(tmp_path))


async def test_cool_parks_what_can_park_unloads_the_rest_and_cold_unloads_it(
    ladder: Ladder,
) -> None:
    await ladder.use("asr", "tts")
    await ladder.idle(301)
    assert ladder.runtime.hibernator.state is IdleState.COOL
    assert ladder.asr.state is EngineState.PARKED and ladder.asr.parks == 1
    assert ladder.tts.state is EngineState.UNLOADED  # it cannot park: unloaded instead
    assert ladder.actions() == {("park", "asr", True), ("unload", "tts", True)}
    record = ladder.runtime.store.transitions()[-1]
    (tts,) = [a for a in record.actions if a["target"] == "tts"]
    assert tts["detail"] == "cannot park (its adapter has no parked state): unloaded instead"
    assert record.memory_after["engines"]["asr"] == {
        "state": "parked",
        "ram_bytes": None,
        "vram_bytes": None,
        "parked_ram_bytes": ParkingFakeEngine.KEPT,
    }

    await ladder.idle(1500)
    assert ladder.runtime.hibernator.state is IdleState.COLD
    assert ladder.asr.state is EngineState.UNLOADED  # COLD unloads the parked engine
    assert ("unload", "asr", True) in ladder.actions()


async def test_a_lease_resumes_a_parked_engine_instead_of_loading_it(ladder: Ladder) -> None:
    await ladder.use("asr")
    await ladder.idle(301)
    assert ladder.asr.state is EngineState.PARKED
    await ladder.use("asr")
    assert ladder.runtime.hibernator.state is IdleState.ACTIVE
    assert ladder.asr.state is EngineState.LOADED
    assert (ladder.asr.loads, ladder.asr.resumes) == (1, 1)  # resumed, not loaded again
    status = await ladder.runtime.fleet.status("asr")
    assert (status.loads, status.resumes) == (1, 1)
    assert status.last_resume_seconds is not None
    assert ladder.asr.violations == []


async def test_a_prewarm_resumes_a_parked_engine(ladder: Ladder) -> None:
    await ladder.use("asr")
    await ladder.idle(301)
    assert ladder.asr.state is EngineState.PARKED
    with ladder.runtime.bus.subscribe() as events:
        ladder.runtime.fleet.prewarm(["asr"])  # an operator's wake, a session's pre-warm
        async with asyncio.timeout(10):
            while True:
                event = await events.queue.get()
                if event.type == "engine.state" and event.data["state"] == "loaded":
                    break
    assert ladder.asr.state is EngineState.LOADED and ladder.asr.resumes == 1


async def test_a_load_landing_in_cool_is_parked_again_and_pins_and_leases_hold(
    ladder: Ladder,
) -> None:
    await ladder.runtime.hibernator.force(IdleState.COOL)
    await ladder.runtime.fleet.load("asr")  # a pre-warm that lands in COOL
    await ladder.runtime.hibernator.settled()
    assert ladder.asr.state is EngineState.PARKED

    await ladder.use("asr")
    ladder.runtime.pin("asr", True)
    await ladder.runtime.hibernator.force(IdleState.COOL)
    assert ladder.asr.state is EngineState.LOADED
    (asr,) = [a for a in ladder.runtime.store.transitions()[-1].actions if a["target"] == "asr"]
    assert (asr["action"], asr["ok"], asr["detail"]) == ("park", False, "pinned")


async def test_an_old_file_that_unloads_in_cool_still_unloads(
    make_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    old = '[hibernation.actions.cool]\nunload_roles = ["tts", "duplex"]\n'
    ladder = Ladder(make_runtime, config_file(tmp_path, old))
    hibernator = ladder.runtime.hibernator
    assert hibernator.unloaded_roles(IdleState.COOL) == {Role.TTS, Role.DUPLEX}
    # the default park_roles yield to it; only the roles that came later (translation, the
    # VLM) park
    assert hibernator.parked_roles(IdleState.COOL) == {Role.TRANSLATION, Role.VLM}
    await ladder.use("asr", "tts")
    await ladder.idle(301)
    assert ladder.actions() == {("unload", "tts", True)}
    assert ladder.asr.state is EngineState.LOADED


def gpu_fleet(tmp: Path, available_gib: float) -> tuple[Fleet, ParkingFakeEngine]:
    engine = ParkingFakeEngine("asr", Role.ASR)
    host = HostRam(total_bytes=16 * GIB, available_bytes=int(available_gib * GIB))
    config = config_file(tmp, device="cuda")
    engines: dict[str, Engine] = {"asr": engine, "tts": FakeEngine("tts", Role.TTS)}
    return Fleet(config, Metrics(), engines=engines, host_ram=lambda: host), engine


async def test_a_gpu_engine_host_ram_cannot_hold_is_unloaded_instead(tmp_path: Path) -> None:
    fleet, engine = gpu_fleet(tmp_path, available_gib=5.0)  # 5 GiB - 2 GiB reserve < 3.9 GiB
    await fleet.load("asr")
    outcome = await fleet.park("asr")
    assert outcome.done and outcome.parked is None and outcome.unloaded is not None
    assert "host RAM cannot hold asr's weights (3.91 GiB)" in outcome.reason
    assert engine.state is EngineState.UNLOADED

    roomy, engine = gpu_fleet(tmp_path, available_gib=8.0)
    await roomy.load("asr")
    assert (await roomy.park("asr")).parked is not None
    assert roomy.host_room.summary()["parked"] == {"asr": ParkingFakeEngine.KEPT}


def test_the_host_ram_planner_counts_what_parking_moves(tmp_path: Path) -> None:
    catalog = load_catalog()
    config = config_file(tmp_path, device="cuda").engines["asr"]
    assert moved_when_parked(config.model_copy(update={"device": "cpu"}), catalog, None) == 0
    assert moved_when_parked(config, catalog, None) == 4000 * MIB  # its estimate_vram_mb
    small = config.model_copy(
        update={"model": "Systran/faster-whisper-small", "compute_type": "float16"}
    )
    weights = moved_when_parked(small, catalog, 10 * GIB)
    assert 0 < weights < 1 * GIB  # the catalog's weights, not the VRAM figure with its cache
    host = HostRam(total_bytes=32 * GIB, available_bytes=6 * GIB)
    assert park_refusal("llm", 3 * GIB, {}, host, 2 * GIB) is None
    refusal = park_refusal("llm", 5 * GIB, {"asr": GIB, "tts": 0}, host, 2 * GIB)
    assert refusal is not None and "parked already: asr 1.00 GiB" in refusal


Client = TestClient[Any, Any]


async def test_health_and_metrics_show_parked(
    ladder: Ladder, aiohttp_client: Any, auth: dict[str, str]
) -> None:
    api: Client = await aiohttp_client(create_api_app(ladder.runtime))
    await ladder.use("asr")
    outcome = await ladder.runtime.fleet.park("asr")
    assert outcome.parked is not None
    body = await (await api.get("/health", headers=auth)).json()
    asr = body["engines"]["asr"]
    assert (asr["state"], asr["parks"]) == ("parked", 1)
    assert asr["memory"]["parked_ram_bytes"] == ParkingFakeEngine.KEPT
    assert body["status"] == "ok"  # a parked engine can serve again at once
    assert body["host_ram"]["parked"] == {"asr": ParkingFakeEngine.KEPT}
    ready = await api.get("/health/ready", headers=auth)
    assert ready.status == 200
    page = await (await api.get("/metrics", headers=auth)).text()
    assert 'vo_engine_state{engine="asr",state="parked"} 1.0' in page
    parked = 'vo_engine_memory_bytes{engine="asr",kind="ram",source="parked"}'
    assert f"{parked} {ParkingFakeEngine.KEPT}.0" in page


async def test_cool_keeps_the_real_whisper_weights_in_ram_and_a_request_resumes_it(
    make_runtime: RuntimeFactory, tmp_path: Path, heavy_whisper_dir: Path, tiny_piper_onnx: Path
) -> None:
    text = tiny_profile_toml(heavy_whisper_dir, tiny_piper_onnx, tmp_path)
    text = text.replace('compute_type = "int8"', 'compute_type = "float32"') + COOL_PARKS_BOTH
    path = tmp_path / "heavy.toml"
    path.write_text(text)
    clock = FakeClock()
    runtime = make_runtime(load_config(config_file=path, environ={}), clock=clock, writer=True)
    async with runtime.fleet.lease(["asr", "tts"]):
        pass
    clock.advance(301)
    runtime.hibernator.tick()
    await runtime.hibernator.settled()
    cool = runtime.store.transitions()[-1]
    assert cool.target == "cool"
    actions = {(a["action"], a["target"], a["ok"]) for a in cool.actions}
    assert actions == {("park", "asr", True), ("unload", "tts", True)}  # Piper cannot park
    kept = cool.memory_after["engines"]["asr"]
    assert kept["state"] == "parked" and kept["parked_ram_bytes"] > 25 * MB

    async with runtime.fleet.lease(["asr"]):
        assert runtime.fleet.engine("asr").state is EngineState.LOADED
    status = await runtime.fleet.status("asr")
    assert (status.loads, status.resumes) == (1, 1)

    # parked again in COOL, then unloaded in COLD: the unload gives back the ~36 MB of weights
    # that parking had kept in RSS (a drop measured within one transition, not against a
    # baseline the rest of the process moves)
    clock.advance(301)
    runtime.hibernator.tick()
    await runtime.hibernator.settled()
    assert runtime.store.transitions()[-1].target == "cool"
    assert runtime.fleet.engine("asr").state is EngineState.PARKED
    clock.advance(1800)
    runtime.hibernator.tick()
    await runtime.hibernator.settled()
    cold = runtime.store.transitions()[-1]
    assert cold.target == "cold"
    assert ("unload", "asr", True) in {(a["action"], a["target"], a["ok"]) for a in cold.actions}
    measure.release_freed_memory()  # what glibc's heap kept of the freed weights goes back too
    freed = cold.memory_before["rss_bytes"] - measure.sample().rss_bytes
    assert freed > 25 * MB, f"unloading the parked ASR gave back {freed / MB:.1f} MB"
