"""A host of two GPUs end to end: telemetry per device (simulated and NVML), the gauges, the
recovery wait on the second GPU, and the fleet placing engines per device (``cuda:N`` in the
spec an engine is built from), honouring pins or refusing them with the numbers."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from orchestrator.config import ConfigError, EngineConfig, GpuConfig, load_config
from orchestrator.core.metrics import Metrics
from orchestrator.fleet.fleet import Fleet
from orchestrator.gpu.admission import Admission, AdmissionRefused
from orchestrator.gpu.measurements import MeasurementStore
from orchestrator.gpu.metrics import GpuGauges
from orchestrator.gpu.placement import GIB
from orchestrator.gpu.telemetry import (
    NvmlGpu,
    SimulatedGpu,
    SimulatedGpus,
    backend_for,
    gpu_views,
    wait_for_vram_recovery,
)
from services import nvml
from services.base import Engine, LoadReport, Role, UnloadReport
from tests.fakes import FakeEngine


def two_t4s() -> SimulatedGpus:
    return SimulatedGpus([SimulatedGpu(16 * GIB, name="T4 a"), SimulatedGpu(16 * GIB, name="T4 b")])


# -- telemetry per device ---------------------------------------------------------------------


def test_simulated_gpus_read_per_device() -> None:
    host = two_t4s()
    host.gpus[0].set_process(10, 6 * GIB)
    host.gpus[1].set_process(20, 4 * GIB)
    host.gpus[1].set_process(99, 2 * GIB)  # not ours
    readings = host.read()
    assert [(r.index, r.name, r.used_bytes) for r in readings] == [
        (0, "T4 a", 6 * GIB),
        (1, "T4 b", 6 * GIB),
    ]
    views = gpu_views(readings, {10: "llm", 20: "vlm"})
    assert [(v.index, v.free_bytes, v.stranger_bytes) for v in views] == [
        (0, 10 * GIB, 0),
        (1, 10 * GIB, 2 * GIB),
    ]


def test_the_config_simulates_a_set_and_names_a_bad_one() -> None:
    host = backend_for(
        GpuConfig(backend="simulated", simulated_gpus="t4-16gb+gtx1660-6gb", simulated_total_mb=1)
    )
    assert [(r.index, r.name, r.total_bytes) for r in host.read()] == [
        (0, "simulated t4-16gb", 16 * GIB),
        (1, "simulated gtx1660-6gb", 6 * GIB),
    ]
    with pytest.raises(ConfigError, match=r"gpu\.simulated_gpus: unknown GPU type 'v100'"):
        backend_for(GpuConfig(backend="simulated", simulated_gpus="t4-16gb+v100"))


def test_nvml_reads_every_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two boards as NVML lists them: each with its own name, memory and processes."""
    boards = {
        "h0": ("Tesla T4", 15 * GIB, 7 * GIB, [(7, 6 * GIB)]),
        "h1": ("NVIDIA GeForce GTX 1660", 6 * GIB, 4 * GIB, [(8, 4 * GIB)]),
    }

    def memory(handle: str) -> types.SimpleNamespace:
        _name, total, used, _procs = boards[handle]
        return types.SimpleNamespace(total=total, used=used, free=total - used)

    def processes(handle: str) -> list[types.SimpleNamespace]:
        return [types.SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in boards[handle][3]]

    fake = types.SimpleNamespace(
        NVMLError=RuntimeError,
        NVML_TEMPERATURE_GPU=0,
        nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda index: f"h{index}",
        nvmlDeviceGetName=lambda handle: boards[handle][0],
        nvmlDeviceGetMemoryInfo=memory,
        nvmlDeviceGetUtilizationRates=lambda handle: types.SimpleNamespace(gpu=10, memory=1),
        nvmlDeviceGetPowerUsage=lambda handle: 30_000,
        nvmlDeviceGetTemperature=lambda handle, sensor: 50,
        nvmlDeviceGetComputeRunningProcesses=processes,
        nvmlDeviceGetGraphicsRunningProcesses=lambda handle: [],
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setattr(nvml, "_available", True)
    first, second = NvmlGpu().read()
    assert (first.index, first.name, first.free_bytes) == (0, "Tesla T4", 8 * GIB)
    assert (second.index, second.name, second.free_bytes) == (1, "NVIDIA GeForce GTX 1660", 2 * GIB)
    assert [p.pid for p in first.processes] == [7] and [p.pid for p in second.processes] == [8]


def test_gauges_label_each_gpu() -> None:
    registry = CollectorRegistry()
    host = two_t4s()
    host.gpus[1].set_process(20, 4 * GIB)
    GpuGauges(registry).observe(host.read(), {20: "vlm"})

    def value(gpu: str, kind: str) -> float | None:
        return registry.get_sample_value("vo_gpu_memory_bytes", {"gpu": gpu, "kind": kind})

    assert (value("0", "ours"), value("1", "ours")) == (0, 4 * GIB)


async def test_the_recovery_wait_watches_the_gpu_it_was_given() -> None:
    host = two_t4s()
    host.gpus[0].set_process(10, 15 * GIB)  # GPU 0 stays full throughout
    host.gpus[1].set_process(20, 12 * GIB)
    host.gpus[1].release(20, after_polls=1)
    naps: list[float] = []

    async def nap(seconds: float) -> None:
        naps.append(seconds)

    free = await wait_for_vram_recovery(
        host, 10 * GIB, gpu_index=1, timeout_s=5, poll_s=0.5, sleep=nap
    )
    assert free == 16 * GIB and naps == [0.5]


# -- the fleet places engines per device ------------------------------------------------------

# The seed's three GPU roles (sizes in GiB, priorities as its GPU order) and one big engine.
PIDS = {"seed_llm": 5001, "seed_tts": 5002, "seed_vlm": 5003, "big": 5004}
SIZES_GIB = {"seed_llm": 6.0, "seed_tts": 4.5, "seed_vlm": 4.0, "big": 14.0}
PRIORITIES = {"seed_llm": 60, "seed_tts": 50, "seed_vlm": 70, "big": 40}


class DeviceEngine(FakeEngine):
    """A fake engine built for one device: it occupies that simulated GPU while loaded."""

    def __init__(self, name: str, host: SimulatedGpus, device: str) -> None:
        super().__init__(name, Role.LLM)
        self.host, self.device = host, device
        self.size = int(SIZES_GIB[name] * GIB)

    @property
    def index(self) -> int:
        return int(self.device.partition(":")[2] or 0)

    async def load(self) -> LoadReport:
        report = await super().load()
        self.host.gpus[self.index].set_process(PIDS[self.name], self.size)
        return report

    async def unload(self) -> UnloadReport:
        report = await super().unload()
        self.host.gpus[self.index].release(PIDS[self.name])
        return report


class DeviceFleet(Fleet):
    """The fleet with its engine factory swapped for fakes: it keeps each engine's device."""

    host: SimulatedGpus

    def _create(self, name: str, config: EngineConfig) -> Engine:
        return DeviceEngine(name, self.host, config.device)


def fleet_on(tmp_path: Path, host: SimulatedGpus, devices: dict[str, str]) -> DeviceFleet:
    tables = "".join(
        f'[engines.{name}]\nrole = "llm"\nadapter = "ollama"\nmodel = "m-{name}"\n'
        f'device = "{device}"\npriority = {PRIORITIES[name]}\n'
        f"estimate_vram_mb = {SIZES_GIB[name] * 1024}\npreload = false\n"
        for name, device in devices.items()
    )
    config_file = tmp_path / "two.toml"
    config_file.write_text(
        f'profile = "cpu"\n[state]\ndir = "{tmp_path}"\n[models]\nauto_download = false\n'
        "[gpu]\nreserve_mb = 1024\nrecovery_poll_s = 0.01\n[routing]\ndefault = []\n"
        "[engines.asr]\nenabled = false\n[engines.tts]\nenabled = false\n"
        "[engines.vad]\nenabled = false\n[engines.llm]\nenabled = false\n" + tables
    )
    config = load_config(config_file=config_file, environ={})
    admission = Admission(
        config,
        backend=host,
        store=MeasurementStore(None),
        owners=lambda: {pid: name for name, pid in PIDS.items()},
    )
    DeviceFleet.host = host
    return DeviceFleet(config, Metrics(), admission=admission)


def device_of(fleet: Fleet, name: str) -> str:
    engine = fleet.engine(name)
    assert isinstance(engine, DeviceEngine)
    return engine.device


async def test_the_seeds_setup_4_loads_one_engine_at_a_time(tmp_path: Path) -> None:
    host = two_t4s()
    fleet = fleet_on(tmp_path, host, dict.fromkeys(["seed_llm", "seed_tts", "seed_vlm"], "cuda"))
    names = ("seed_llm", "seed_tts", "seed_vlm")
    for name in names:
        await fleet.load(name)
    assert [device_of(fleet, n) for n in names] == ["cuda", "cuda", "cuda:1"]
    assert [r.used_bytes for r in host.read()] == [int(10.5 * GIB), 4 * GIB]
    budget = await fleet.vram_budget()
    assert budget is not None
    assert [(g["device"], g["engines"], g["ours_bytes"]) for g in budget["gpus"]] == [
        ("cuda:0", ["seed_llm", "seed_tts"], int(10.5 * GIB)),
        ("cuda:1", ["seed_vlm"], 4 * GIB),
    ]
    assert budget["gpu"] == 0 and budget["name"] == "T4 a"  # the first GPU's, as before
    # unloaded and loaded again, the VLM goes back where it was planned
    await fleet.unload("seed_vlm")
    await fleet.load("seed_vlm")
    assert device_of(fleet, "seed_vlm") == "cuda:1"


async def test_a_pinned_engine_loads_on_its_gpu_as_configured(tmp_path: Path) -> None:
    host = two_t4s()
    fleet = fleet_on(tmp_path, host, {"seed_tts": "cuda:1", "seed_llm": "cuda"})
    pinned = fleet.engine("seed_tts")
    await fleet.load("seed_tts")
    assert fleet.engine("seed_tts") is pinned  # built for cuda:1 already: not rebuilt
    assert device_of(fleet, "seed_tts") == "cuda:1"
    assert host.read()[1].used_bytes == int(4.5 * GIB)


async def test_a_pinned_engine_without_room_is_refused_with_the_numbers(tmp_path: Path) -> None:
    host = two_t4s()
    host.gpus[1].set_process(9999, 8 * GIB)  # someone else's
    fleet = fleet_on(tmp_path, host, {"big": "cuda:1", "seed_llm": "cuda"})
    with pytest.raises(AdmissionRefused) as caught:
        await fleet.load("big")
    message = str(caught.value)
    assert "pinned to cuda:1" in message
    assert "8.00 GiB used by other processes" in message
    assert "GPU 0" not in message
    assert fleet.engine("big").state.value == "unloaded"
    assert host.read()[0].used_bytes == 0  # GPU 0 had room, and was not used
