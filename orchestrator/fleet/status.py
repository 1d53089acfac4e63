"""The fleet as health checks, transition records and the console see it.

``engine_status`` joins an engine's own health with what the fleet knows of it (downloads,
loads, leases, pins, its server process); ``memory_snapshot`` is what the hibernator records
before and after a transition.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.fleet.records import EngineRecord
from services import measure
from services.base import (
    Concurrency,
    Engine,
    EngineMemory,
    EngineState,
    ProcessBacked,
    ProcessView,
    ServesConcurrently,
)

DOWNLOADING = "downloading"


@dataclass(frozen=True)
class EngineStatus:
    """One engine as health checks and the console see it."""

    name: str
    role: str
    adapter: str
    runtime: str
    model: str
    state: str
    memory: EngineMemory
    priority: int
    detail: str
    hint: str
    loads: int
    last_load_seconds: float | None
    last_unload_seconds: float | None
    last_used: float | None
    leases: int
    pinned: bool
    process: ProcessView | None = None  # the server process of a managed engine
    concurrency: Concurrency | None = None  # requests served at once, where the engine says
    parks: int = 0
    resumes: int = 0
    last_park_seconds: float | None = None
    last_resume_seconds: float | None = None

    @property
    def usable(self) -> bool:
        """Loaded, loading, parked, or able to load right now."""
        return self.state in (
            EngineState.LOADED,
            EngineState.LOADING,
            EngineState.PARKED,
            EngineState.UNLOADED,
        )


async def engine_status(name: str, record: EngineRecord) -> EngineStatus:
    health = await record.engine.health()
    state: str = health.state
    detail, hint = health.detail, health.hint
    if record.downloading:
        state, detail = DOWNLOADING, "fetching model files from the hub"
    elif health.state is EngineState.MISSING and record.download_error:
        detail = record.download_error
    return EngineStatus(
        name=name,
        role=record.config.role,
        adapter=record.config.adapter,
        runtime=record.engine.runtime,
        model=record.config.model,
        state=state,
        memory=record.engine.memory(),
        priority=record.config.priority,
        detail=detail,
        hint=hint,
        loads=record.loads,
        last_load_seconds=record.last_load.seconds if record.last_load else None,
        last_unload_seconds=record.last_unload.seconds if record.last_unload else None,
        last_used=record.last_used,
        leases=record.leases,
        pinned=record.pinned,
        process=_process_view(record.engine),
        concurrency=(
            record.engine.concurrency() if isinstance(record.engine, ServesConcurrently) else None
        ),
        parks=record.parks,
        resumes=record.resumes,
        last_park_seconds=record.last_park.seconds if record.last_park else None,
        last_resume_seconds=record.last_resume.seconds if record.last_resume else None,
    )


def _process_view(engine: Engine) -> ProcessView | None:
    return engine.process_view() if isinstance(engine, ProcessBacked) else None


async def memory_snapshot(records: Mapping[str, EngineRecord]) -> dict[str, Any]:
    """Process RSS and VRAM plus each engine's measured footprint, for transition records."""
    sample = await asyncio.to_thread(measure.sample)
    return {
        "rss_bytes": sample.rss_bytes,
        "vram_bytes": sample.vram_bytes,
        "engines": {
            name: {
                "state": rec.engine.state.value,
                "ram_bytes": rec.engine.memory().measured_ram_bytes,
                "vram_bytes": rec.engine.memory().measured_vram_bytes,
                "parked_ram_bytes": rec.engine.memory().parked_ram_bytes,
            }
            for name, rec in records.items()
        },
    }
