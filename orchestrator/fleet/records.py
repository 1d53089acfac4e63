"""What the fleet keeps per engine: the engine, its gate and leases, and the history of its loads;
and what an unload request did.

A record is shared by the fleet's parts: ``fleet`` loads, leases and unloads under its gate,
``status`` reads it for health checks and the console, ``vram`` describes it to the admission
and notes where the planner put it (``on_cpu_instead``, ``placed_gpu``). Only ``fleet`` changes
leases and load state.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.config import EngineConfig
from services.base import Engine, EngineSpec, EngineState, LoadReport, ParkReport, UnloadReport


@dataclass(frozen=True)
class LoadSpan:
    """When one load ran (``time.perf_counter``), to show that independent loads overlap."""

    started: float
    ended: float


@dataclass(frozen=True)
class UnloadOutcome:
    """What an unload request did: unloaded (with its report), or skipped and why."""

    engine: str
    unloaded: bool
    reason: str = ""
    report: UnloadReport | None = None


@dataclass(frozen=True)
class ParkOutcome:
    """What a park request did: parked (with its report), unloaded instead (the engine cannot
    park, or host RAM cannot hold it: ``reason`` says which), or skipped and why."""

    engine: str
    done: bool
    reason: str = ""
    parked: ParkReport | None = None
    unloaded: UnloadReport | None = None


@dataclass
class EngineRecord:
    config: EngineConfig
    engine: Engine
    gate: asyncio.Condition = field(default_factory=asyncio.Condition)
    leases: int = 0
    waiting: int = 0
    pinned: bool = False
    operator_load: bool = False  # an operator's load holds until the ladder's next transition
    loading: asyncio.Task[LoadReport] | None = None
    loads: int = 0
    last_load: LoadReport | None = None
    last_unload: UnloadReport | None = None
    parks: int = 0
    last_park: ParkReport | None = None
    resumes: int = 0
    last_resume: LoadReport | None = None
    spans: list[LoadSpan] = field(default_factory=list)
    last_used: float | None = None
    downloading: bool = False
    download_error: str | None = None
    on_cpu_instead: bool = False  # the planner placed a GPU engine on the CPU
    placed_gpu: int | None = None  # the GPU the planner put the engine on (None: none yet)

    @property
    def loaded(self) -> bool:
        return self.engine.state is EngineState.LOADED

    @property
    def parked(self) -> bool:
        return self.engine.state is EngineState.PARKED

    @property
    def held(self) -> bool:
        """Leased, or a request is waiting for a lease: never unloaded then."""
        return bool(self.leases or self.waiting)

    def effective_config(self) -> EngineConfig:
        """The engine's config as the planner sees it: on the CPU when the planner moved it
        there; otherwise the operator's device (``cuda`` lets the planner choose the GPU)."""
        if self.on_cpu_instead:
            return self.config.model_copy(update={"device": "cpu", "compute_type": "default"})
        return self.config

    def device_config(self) -> EngineConfig:
        """The config the engine is built from: ``cuda:N`` once the planner put it on GPU N."""
        config = self.effective_config()
        if self.placed_gpu is None or config.device == "cpu":
            return config
        return config.model_copy(update={"device": f"cuda:{self.placed_gpu}"})

    @property
    def built_for_gpu(self) -> int:
        """The GPU the engine object was built for: its placement, its pin, else CUDA's 0."""
        if self.placed_gpu is not None:
            return self.placed_gpu
        return self.config.gpu_pin or 0


def spec_for(name: str, engine: EngineConfig, models_dir: Path, sessions: int = 1) -> EngineSpec:
    """What the adapter is told; ``sessions``: how many at once the VRAM plan budgets for."""
    mb = 1024 * 1024
    return EngineSpec(
        name=name,
        role=engine.role,
        model=engine.model,
        models_dir=models_dir,
        device=engine.device,
        compute_type=engine.compute_type,
        options=dict(engine.options),
        estimated_vram_bytes=int(engine.estimate_vram_mb * mb) if engine.estimate_vram_mb else None,
        estimated_ram_bytes=int(engine.estimate_ram_mb * mb) if engine.estimate_ram_mb else None,
        sessions=sessions,
    )
