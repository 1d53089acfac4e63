"""GPU telemetry: the simulated and NVML backends, attribution, GPU types, the recovery wait,
the sampler and its gauges. Nothing here sleeps: time is driven by injected sleeps."""

from __future__ import annotations

import asyncio
import logging
import sys
import types
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from orchestrator.config import GpuConfig
from orchestrator.gpu.gpu_types import GPU_TYPES, gpu_type_for
from orchestrator.gpu.metrics import GpuGauges
from orchestrator.gpu.placement import GIB, MIB, GpuView
from orchestrator.gpu.sampler import GpuSampler
from orchestrator.gpu.telemetry import (
    NvmlGpu,
    SimulatedGpu,
    VramNotRecovered,
    attribute,
    backend_for,
    gpu_views,
    wait_for_vram_recovery,
)
from services import nvml
from services.nvml import GpuProcess, GpuTelemetry


def test_simulated_gpu_reports_memory_and_processes() -> None:
    sim = SimulatedGpu(16 * GIB, base_used_bytes=300 * MIB)
    sim.set_process(10, 2 * GIB)
    sim.set_process(20, 1 * GIB)
    (reading,) = sim.read()
    assert reading.total_bytes == 16 * GIB
    assert reading.used_bytes == 3 * GIB + 300 * MIB
    assert reading.free_bytes == 13 * GIB - 300 * MIB
    assert [(p.pid, p.used_bytes) for p in reading.processes] == [(10, 2 * GIB), (20, 1 * GIB)]
    sim.set_process(30, 100 * GIB)
    assert sim.read()[0].free_bytes == 0  # never below zero


def test_simulated_release_shows_free_only_after_the_scripted_polls() -> None:
    sim = SimulatedGpu(16 * GIB)
    sim.set_process(10, 4 * GIB)
    sim.release(10, after_polls=3)
    free = [sim.read()[0].free_bytes for _ in range(5)]
    assert free == [12 * GIB] * 3 + [16 * GIB] * 2
    assert sim.read()[0].processes == ()
    assert sim.polls == 6


def test_attribution_splits_ours_strangers_and_the_rest() -> None:
    sim = SimulatedGpu(24 * GIB, base_used_bytes=500 * MIB)
    for pid, size in ((1, 2 * GIB), (2, 3 * GIB), (3, 1 * GIB), (4, 4 * GIB)):
        sim.set_process(pid, size)
    (reading,) = sim.read()
    split = attribute(reading, {1: "asr+tts", 2: "llm", 3: "asr+tts"})
    assert split.ours == {"asr+tts": 3 * GIB, "llm": 3 * GIB}
    assert split.ours_bytes == 6 * GIB
    assert split.stranger_bytes == 4 * GIB
    assert split.unattributed_bytes == 500 * MIB
    assert gpu_views([reading], {1: "a", 2: "b", 3: "c"}) == [
        GpuView(0, 24 * GIB, reading.free_bytes, 4 * GIB)
    ]


def test_nvml_backend_answers_a_list_with_or_without_a_gpu() -> None:
    readings = NvmlGpu().read()
    assert isinstance(readings, list)  # [] on a machine without a GPU, never an exception
    for reading in readings:
        assert reading.total_bytes > 0
        assert abs(reading.total_bytes - reading.used_bytes - reading.free_bytes) < 1 * GIB
        assert all(p.pid > 0 for p in reading.processes)


class FakeNvmlError(Exception):
    pass


def fake_pynvml() -> types.SimpleNamespace:
    """pynvml's surface as NVML answers for one GPU that cannot report its power, with one
    process in both the compute and graphics lists and one whose memory the driver hides."""

    def power(handle: str) -> int:
        raise FakeNvmlError("Not Supported")

    def compute(handle: str) -> list[types.SimpleNamespace]:
        return [types.SimpleNamespace(pid=7, usedGpuMemory=2 * GIB)]

    def graphics(handle: str) -> list[types.SimpleNamespace]:
        return [
            types.SimpleNamespace(pid=7, usedGpuMemory=2 * GIB),
            types.SimpleNamespace(pid=9, usedGpuMemory=None),
        ]

    return types.SimpleNamespace(
        NVMLError=FakeNvmlError,
        NVML_TEMPERATURE_GPU=0,
        nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda index: f"handle-{index}",
        nvmlDeviceGetName=lambda handle: b"Tesla T4",
        nvmlDeviceGetMemoryInfo=lambda handle: types.SimpleNamespace(
            total=15 * GIB, used=3 * GIB, free=12 * GIB
        ),
        nvmlDeviceGetUtilizationRates=lambda handle: types.SimpleNamespace(gpu=42, memory=10),
        nvmlDeviceGetPowerUsage=power,
        nvmlDeviceGetTemperature=lambda handle, sensor: 55,
        nvmlDeviceGetComputeRunningProcesses=compute,
        nvmlDeviceGetGraphicsRunningProcesses=graphics,
    )


def test_nvml_telemetry_reads_every_field(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setattr(nvml, "_available", True)
    (reading,) = NvmlGpu().read()
    assert (reading.index, reading.name) == (0, "Tesla T4")
    assert (reading.total_bytes, reading.used_bytes, reading.free_bytes) == (
        15 * GIB,
        3 * GIB,
        12 * GIB,
    )
    assert (reading.utilization_pct, reading.temperature_c) == (42.0, 55.0)
    assert reading.power_w is None  # not supported on this board: empty, not an error
    assert reading.processes == (GpuProcess(7, 2 * GIB), GpuProcess(9, None))
    found = gpu_type_for(reading.name, reading.total_bytes)
    assert found is not None and found.name == "t4-16gb"
    fake.nvmlDeviceGetPowerUsage = lambda handle: 70_500  # milliwatts
    assert NvmlGpu().read()[0].power_w == 70.5


def test_backend_follows_the_config() -> None:
    sim = backend_for(GpuConfig(backend="simulated", simulated_total_mb=24576))
    assert isinstance(sim, SimulatedGpu)
    assert sim.read()[0].total_bytes == 24 * GIB
    assert isinstance(backend_for(GpuConfig()), NvmlGpu)


def test_named_gpu_types_and_their_seed_prices() -> None:
    assert sorted(GPU_TYPES) == sorted(
        [
            "gtx1660-6gb",
            "t4-16gb",
            "l4-24gb",
            "a10g-24gb",
            "rtx3090-24gb",
            "a100-40gb",
            "a100-80gb",
            "h100-80gb",
        ]
    )
    prices = {name: GPU_TYPES[name].usd_per_hour for name in ("t4-16gb", "a100-40gb", "a100-80gb")}
    assert prices == {"t4-16gb": 0.67, "a100-40gb": 2.95, "a100-80gb": 3.67}
    for name, gpu in GPU_TYPES.items():
        assert gpu.memory_bytes == int(name.split("-")[-1].removesuffix("gb")) * GIB
        assert gpu.usd_per_hour > 0


@pytest.mark.parametrize(
    ("nvml_name", "gib", "expected"),
    [
        ("Tesla T4", 15.0, "t4-16gb"),
        ("NVIDIA L4", 22.5, "l4-24gb"),
        ("NVIDIA A10G", 22.0, "a10g-24gb"),
        ("NVIDIA GeForce RTX 3090", 24.0, "rtx3090-24gb"),
        ("NVIDIA A100-SXM4-40GB", 39.4, "a100-40gb"),
        ("NVIDIA A100-SXM4-80GB", 79.2, "a100-80gb"),
        ("NVIDIA H100 80GB HBM3", 79.6, "h100-80gb"),
        ("NVIDIA GeForce GTX 1660 SUPER", 5.8, "gtx1660-6gb"),
        ("NVIDIA GeForce RTX 4090", 24.0, None),
    ],
)
def test_a_detected_gpu_maps_to_its_type(nvml_name: str, gib: float, expected: str | None) -> None:
    found = gpu_type_for(nvml_name, int(gib * GIB))
    assert (found.name if found else None) == expected


# -- waiting for VRAM to recover --------------------------------------------------------------


class Naps:
    """An injected sleep that only records, optionally advancing a fake clock."""

    def __init__(self, clock: list[float] | None = None) -> None:
        self.calls: list[float] = []
        self.clock = clock

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self.clock is not None:
            self.clock[0] += seconds


async def test_recovery_wait_returns_once_free_memory_is_back() -> None:
    sim = SimulatedGpu(16 * GIB)
    sim.set_process(10, 10 * GIB)
    sim.release(10, after_polls=4)
    naps = Naps()
    free = await wait_for_vram_recovery(sim, 12 * GIB, timeout_s=10, poll_s=1, sleep=naps)
    assert free == 16 * GIB
    assert naps.calls == [1, 1, 1, 1]
    assert sim.polls == 5


async def test_recovery_wait_needs_no_nap_when_memory_is_already_free() -> None:
    naps = Naps()
    assert await wait_for_vram_recovery(SimulatedGpu(8 * GIB), GIB, sleep=naps) == 8 * GIB
    assert naps.calls == []


async def test_recovery_wait_times_out_with_the_numbers() -> None:
    sim = SimulatedGpu(16 * GIB)
    sim.set_process(10, 10 * GIB)
    sim.release(10, after_polls=100)
    now = [0.0]
    naps = Naps(now)
    with pytest.raises(VramNotRecovered) as caught:
        await wait_for_vram_recovery(
            sim, 12 * GIB, timeout_s=2, poll_s=0.5, sleep=naps, clock=lambda: now[0]
        )
    message = str(caught.value)
    assert "free VRAM is 6.00 GiB" in message
    assert "needs 12.00 GiB" in message
    assert "short by 6.00 GiB" in message
    assert "after 2 s and 5 polls" in message
    assert naps.calls == [0.5] * 4


async def test_recovery_wait_is_bounded_even_when_the_clock_stands_still() -> None:
    sim = SimulatedGpu(16 * GIB)
    sim.set_process(10, 15 * GIB)
    naps = Naps()
    with pytest.raises(VramNotRecovered):
        await wait_for_vram_recovery(
            sim, 8 * GIB, timeout_s=3, poll_s=1, sleep=naps, clock=lambda: 0
        )
    assert len(naps.calls) == 3
    with pytest.raises(VramNotRecovered, match="GPU 1 is not there"):
        await wait_for_vram_recovery(sim, GIB, gpu_index=1, sleep=naps)


# -- the sampler ------------------------------------------------------------------------------


class Gate:
    """An injected sleep that blocks until the test opens it, recording each interval."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self._open = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        await self._open.wait()
        self._open.clear()

    def open(self) -> None:
        self._open.set()


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


async def test_sampler_reads_on_its_interval_and_follows_changes() -> None:
    sim = SimulatedGpu(16 * GIB)
    seen: list[list[GpuTelemetry]] = []
    gate = Gate()
    sampler = GpuSampler(sim, 2.0, on_sample=seen.append, sleep=gate)
    task = sampler.start()
    await until(lambda: gate.calls == [2.0])
    assert sampler.samples == 1 and sampler.latest == seen[0]
    gate.open()  # the 2 s pass
    await until(lambda: gate.calls == [2.0, 2.0])
    assert sampler.samples == 2
    sampler.set_interval(15.0)  # WARM: slower, with a fresh reading at once
    await until(lambda: gate.calls == [2.0, 2.0, 15.0])
    assert sampler.samples == 3 and sampler.interval_s == 15.0
    with pytest.raises(RuntimeError, match="already running"):
        sampler.start()
    await sampler.stop()
    assert task.done() and task.cancelled()
    assert not sampler.running
    with pytest.raises(ValueError, match="positive"):
        sampler.set_interval(0)


async def test_sampler_survives_a_failing_read(caplog: pytest.LogCaptureFixture) -> None:
    class Flaky:
        def __init__(self) -> None:
            self.calls = 0

        def read(self) -> list[GpuTelemetry]:
            self.calls += 1
            if self.calls in (2, 3):
                raise RuntimeError("GPU is lost")
            return SimulatedGpu(8 * GIB).read()

    sampler = GpuSampler(Flaky(), 1.0, sleep=Naps())
    with caplog.at_level(logging.WARNING):
        first = sampler.sample_once()
        assert sampler.sample_once() == first  # the last good reading stays
        sampler.sample_once()
        assert sampler.sample_once()[0].total_bytes == 8 * GIB
    assert caplog.text.count("GPU telemetry read failed: RuntimeError: GPU is lost") == 1
    assert sampler.samples == 2


# -- gauges -----------------------------------------------------------------------------------


def test_gauges_show_memory_load_and_the_planners_figures() -> None:
    registry = CollectorRegistry()
    gauges = GpuGauges(registry)
    sim = SimulatedGpu(16 * GIB, base_used_bytes=GIB, utilization_pct=37.0, power_w=61.5)
    sim.set_process(10, 2 * GIB)
    sim.set_process(99, 3 * GIB)
    gauges.observe(sim.read(), {10: "asr"})
    gauges.set_reserve(GIB)
    gauges.set_engine_vram("asr", estimated=985 * MIB, measured=812 * MIB)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("vo_gpu_memory_bytes", gpu="0", kind="total") == 16 * GIB
    assert value("vo_gpu_memory_bytes", gpu="0", kind="used") == 6 * GIB
    assert value("vo_gpu_memory_bytes", gpu="0", kind="free") == 10 * GIB
    assert value("vo_gpu_memory_bytes", gpu="0", kind="ours") == 2 * GIB
    assert value("vo_gpu_memory_bytes", gpu="0", kind="strangers") == 3 * GIB
    assert value("vo_gpu_memory_bytes", gpu="0", kind="unattributed") == GIB
    assert value("vo_gpu_utilization_percent", gpu="0") == 37.0
    assert value("vo_gpu_power_watts", gpu="0") == 61.5
    assert value("vo_gpu_temperature_celsius", gpu="0") == 40.0
    assert value("vo_vram_reserve_bytes") == GIB
    assert value("vo_vram_engine_bytes", engine="asr", source="estimated") == 985 * MIB
    assert value("vo_vram_engine_bytes", engine="asr", source="measured") == 812 * MIB
    sim.power_w = None  # a board that cannot report power: the series goes, not a zero
    gauges.observe(sim.read(), {10: "asr"})
    gauges.set_engine_vram("asr", estimated=985 * MIB, measured=None)
    assert value("vo_gpu_power_watts", gpu="0") is None
    assert value("vo_vram_engine_bytes", engine="asr", source="measured") is None
