"""The fleet asks the planner before each load: evict to make room, wait for VRAM, or refuse.

A simulated GPU stands in for NVML; fake engines occupy it as they load and free it (with the
lag a real driver shows) as they unload.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import load_config
from orchestrator.core.metrics import Metrics
from orchestrator.fleet.fleet import Fleet
from orchestrator.gpu.admission import Admission, AdmissionRefused
from orchestrator.gpu.measurements import MeasurementStore
from orchestrator.gpu.telemetry import SimulatedGpu
from services.base import LoadReport, Role, UnloadReport
from tests.fakes import FakeEngine

GIB = 2**30
PIDS = {"small": 4001, "big": 4002, "other": 4003}


class GpuEngine(FakeEngine):
    """A fake engine that takes its size on the simulated GPU while loaded."""

    def __init__(self, name: str, gpu: SimulatedGpu, size: int) -> None:
        super().__init__(name, Role.ASR)
        self.gpu, self.size = gpu, size

    async def load(self) -> LoadReport:
        report = await super().load()
        self.gpu.set_process(PIDS[self.name], self.size)
        return report

    async def unload(self) -> UnloadReport:
        report = await super().unload()
        self.gpu.release(PIDS[self.name], after_polls=2)  # the driver lags behind the unload
        return report


def fleet_on(tmp_path: Path, gpu: SimulatedGpu) -> Fleet:
    def engine(name: str, priority: int, gib: int) -> str:
        return f"""
[engines.{name}]
role = "asr"
adapter = "faster-whisper"
model = "/models/{name}"
device = "cuda"
priority = {priority}
estimate_vram_mb = {gib * 1024}
preload = false
"""

    config_file = tmp_path / "gpu.toml"
    config_file.write_text(
        f'profile = "cpu"\n[state]\ndir = "{tmp_path}"\n[models]\nauto_download = false\n'
        '[gpu]\nreserve_mb = 1024\nrecovery_poll_s = 0.01\n[routing]\ndefault = ["big"]\n'
        "[engines.asr]\nenabled = false\n[engines.tts]\nenabled = false\n"
        "[engines.vad]\nenabled = false\n[engines.llm]\nenabled = false\n"
        + engine("small", 10, 8)
        + engine("big", 90, 10)
        + engine("other", 50, 4)
    )
    config = load_config(config_file=config_file, environ={})
    admission = Admission(
        config,
        backend=gpu,
        store=MeasurementStore(None),
        owners=lambda: {pid: name for name, pid in PIDS.items()},
    )
    engines = {n: GpuEngine(n, gpu, s * GIB) for n, s in (("small", 8), ("big", 10), ("other", 4))}
    return Fleet(config, Metrics(), engines=dict(engines), admission=admission)


async def test_an_idle_lower_priority_engine_is_evicted_to_make_room(tmp_path: Path) -> None:
    gpu = SimulatedGpu(16 * GIB)
    fleet = fleet_on(tmp_path, gpu)
    await fleet.load("small")
    polls_before = gpu.polls
    await fleet.load("big")  # 8 + 10 > 16 - 1: small must go first
    assert fleet.engine("small").state.value == "unloaded"
    assert fleet.engine("big").state.value == "loaded"
    assert gpu.polls - polls_before >= 3  # it waited for the lagging release to show as free
    assert gpu.read()[0].used_bytes == 10 * GIB


async def test_refused_when_only_leased_engines_could_make_room(tmp_path: Path) -> None:
    fleet = fleet_on(tmp_path, SimulatedGpu(16 * GIB))
    async with fleet.lease(["small"]):
        with pytest.raises(AdmissionRefused) as caught:
            await fleet.load("big")
    message = str(caught.value)
    assert "big" in message and "GiB" in message
    assert "small" in message  # it says what holds the memory
    assert fleet.engine("small").state.value == "loaded"
    assert fleet.engine("big").state.value == "unloaded"


async def test_engines_that_fit_are_admitted_side_by_side(tmp_path: Path) -> None:
    gpu = SimulatedGpu(24 * GIB)
    fleet = fleet_on(tmp_path, gpu)
    await fleet.load("big")
    await fleet.load("other")
    await fleet.load("small")  # 10 + 4 + 8 = 22 <= 24 - 1
    assert {fleet.engine(n).state.value for n in PIDS} == {"loaded"}
    budget = await fleet.vram_budget()
    assert budget is not None and budget["name"] == "simulated GPU"
