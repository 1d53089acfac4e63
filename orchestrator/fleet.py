"""The fleet owns the engines: it prepares (downloads), loads and unloads them, and keeps stats.

Loads are single-flight per engine (the engine's own lock makes concurrent callers share one
load) and independent engines load in parallel. The hibernation and planner issues add leases,
admission and eviction here; adapters stay free of that policy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.config import AppConfig, EngineConfig
from orchestrator.downloads import DownloadError, download_in_background
from orchestrator.metrics import Metrics
from orchestrator.tasks import TaskSet
from services.base import Engine, EngineMemory, EngineSpec, EngineState, LoadReport, UnloadReport
from services.errors import EngineError
from services.registry import create_engine

log = logging.getLogger(__name__)

DOWNLOADING = "downloading"


class UnknownEngine(KeyError):
    """No engine of that name is configured."""


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
    last_used: float | None

    @property
    def usable(self) -> bool:
        """Loaded, loading, or able to load right now."""
        return self.state in (EngineState.LOADED, EngineState.LOADING, EngineState.UNLOADED)


@dataclass
class _Record:
    config: EngineConfig
    engine: Engine
    loads: int = 0
    last_load: LoadReport | None = None
    last_unload: UnloadReport | None = None
    last_used: float | None = None
    downloading: bool = False
    download_error: str | None = None


def spec_for(name: str, engine: EngineConfig, models_dir: Path) -> EngineSpec:
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
    )


class Fleet:
    def __init__(self, config: AppConfig, metrics: Metrics) -> None:
        self._config = config
        self._metrics = metrics
        self._tasks = TaskSet("fleet")
        self._records: dict[str, _Record] = {}
        self._preparing: list[asyncio.Task[None]] = []
        for name, engine_config in config.engines.items():
            spec = spec_for(name, engine_config, config.models.dir)
            self._records[name] = _Record(engine_config, create_engine(engine_config.adapter, spec))

    @property
    def names(self) -> list[str]:
        return list(self._records)

    def engine(self, name: str) -> Engine:
        return self._record(name).engine

    def _record(self, name: str) -> _Record:
        try:
            return self._records[name]
        except KeyError:
            raise UnknownEngine(name) from None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Begin preparing every engine in the background; the server answers meanwhile."""
        self._preparing = [
            self._tasks.spawn(f"prepare-{name}", self._prepare(name)) for name in self._records
        ]

    async def wait_prepared(self) -> None:
        """Wait until every engine ``start()`` began is downloaded and preloaded (or failed)."""
        await asyncio.gather(*self._preparing, return_exceptions=True)

    async def _prepare(self, name: str) -> None:
        record = self._records[name]
        if self._config.models.auto_download:
            await self.download(name)
        if record.config.preload and record.engine.state is EngineState.UNLOADED:
            try:
                await self.load(name)
            except EngineError as exc:
                log.warning("%s", exc)

    async def download(self, name: str) -> None:
        """Fetch whatever hub files the engine lacks; failures become the engine's status."""
        record = self._record(name)
        models_dir = self._config.models.dir
        for artifact in record.engine.artifacts():
            if not artifact.missing_files(models_dir):
                continue
            record.downloading = True
            try:
                await download_in_background(artifact, models_dir)
                record.download_error = None
            except DownloadError as exc:
                record.download_error = str(exc)
                log.warning("%s: %s", name, exc)
            finally:
                record.downloading = False

    async def load(self, name: str) -> LoadReport:
        record = self._record(name)
        started = time.perf_counter()
        try:
            report = await record.engine.load()
        except EngineError:
            self._metrics.load_finished(name, time.perf_counter() - started, ok=False)
            raise
        if report.seconds > 0:
            record.loads += 1
            record.last_load = report
            self._metrics.load_finished(name, report.seconds, ok=True)
        return report

    async def unload(self, name: str) -> UnloadReport:
        record = self._record(name)
        report = await record.engine.unload()
        if report.seconds > 0:
            record.last_unload = report
            self._metrics.unload_finished(name, report.seconds)
        return report

    def touch(self, name: str, now: float | None = None) -> None:
        """Note that a request used this engine (for the console's "last used")."""
        self._record(name).last_used = time.time() if now is None else now

    async def stop(self) -> None:
        """Cancel preparation and unload every engine, so the process leaves nothing behind."""
        await self._tasks.cancel_all()
        results = await asyncio.gather(
            *(self.unload(name) for name in self._records), return_exceptions=True
        )
        for name, result in zip(self._records, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("unloading %s at shutdown failed: %s", name, result)

    # -- what the outside sees ---------------------------------------------------------------

    async def statuses(self) -> list[EngineStatus]:
        return list(await asyncio.gather(*(self.status(name) for name in self._records)))

    async def status(self, name: str) -> EngineStatus:
        record = self._record(name)
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
            last_used=record.last_used,
        )
