"""Lifecycle bookkeeping shared by engines that run inside this process.

Subclasses supply ``_load_model()`` and ``_release_model()`` (blocking; they run in a worker
thread) and the paths they need. This class keeps the state table of ``services.base``,
serialises load, park and unload with one lock, measures each transition and translates
library errors into the ``services.errors`` tree.

An adapter that can park sets ``park_refusal = None`` and supplies ``_park_model()`` (move the
weights to host RAM, free the device) and ``_resume_model()`` (copy them back): the model object
is kept, so resuming reads no file. The others keep the default refusal and are unloaded instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from services import measure
from services.base import (
    EngineHealth,
    EngineMemory,
    EngineSpec,
    EngineState,
    LoadReport,
    ModelArtifact,
    ParkReport,
    Role,
    Runtime,
    UnloadReport,
)
from services.errors import (
    CannotPark,
    EngineCallError,
    EngineLoadError,
    EngineNotLoaded,
    ModelMissing,
)

log = logging.getLogger(__name__)

DOWNLOAD_HINT = "run `python -m orchestrator download` on a machine with internet access"


class InProcessEngine(ABC):
    role: Role
    runtime = Runtime.IN_PROCESS
    # Why this adapter cannot park (None: it can, through _park_model and _resume_model).
    park_refusal: ClassVar[str | None] = "this adapter has no parked state"

    def __init__(self, spec: EngineSpec) -> None:
        measure.keep_large_allocations_returnable()
        self.name = spec.name
        self.spec = spec
        self._state = EngineState.UNLOADED
        self._last_error: str | None = None
        self._hint = ""
        self._lock = asyncio.Lock()
        self._measured_ram: int | None = None
        self._measured_vram: int | None = None
        self._parked = False  # the model object is kept, its weights in host RAM
        self._parked_ram: int | None = None

    # -- what subclasses provide -------------------------------------------------------------

    @abstractmethod
    def artifacts(self) -> list[ModelArtifact]:
        """Hub files this engine needs; empty when the model is a local path."""

    @abstractmethod
    def _model_paths(self) -> list[Path]:
        """Local files or folders that must exist before loading."""

    @abstractmethod
    def _load_model(self) -> None:
        """Blocking: build the runtime object. Runs in a worker thread."""

    @abstractmethod
    def _release_model(self) -> None:
        """Blocking: drop every reference to the runtime object."""

    @abstractmethod
    def _is_loaded(self) -> bool:
        """The model object exists (serving, or parked)."""

    def _park_model(self) -> None:
        """Blocking: move the weights to host RAM and free the device memory."""
        raise NotImplementedError

    def _resume_model(self) -> None:
        """Blocking: copy the parked weights back to the device."""
        raise NotImplementedError

    # -- the contract ------------------------------------------------------------------------

    @property
    def state(self) -> EngineState:
        if self._parked:
            return EngineState.PARKED
        if self._state in (EngineState.UNLOADED, EngineState.MISSING):
            return EngineState.MISSING if self._missing() else EngineState.UNLOADED
        return self._state

    @property
    def last_error(self) -> str | None:
        return self._last_error

    async def load(self) -> LoadReport:
        async with self._lock:
            if self._parked:
                return await self._resume()
            if self._is_loaded():
                return LoadReport(seconds=0.0, ram_delta_bytes=0, vram_delta_bytes=0)
            missing = self._missing()
            if missing:
                self._state = EngineState.MISSING
                self._last_error = f"model not on disk: {', '.join(missing)}"
                self._hint = DOWNLOAD_HINT
                raise ModelMissing(self._last_error, engine=self.name, hint=self._hint)
            self._state = EngineState.LOADING
            before = await asyncio.to_thread(measure.sample)
            started = time.perf_counter()
            try:
                await asyncio.to_thread(self._load_model)
            except BaseException as exc:
                await asyncio.to_thread(self._release_model)
                self._state = EngineState.FAILED
                self._last_error = f"load failed: {exc}"
                self._hint = "check the model files and the engine's device/compute_type"
                if isinstance(exc, Exception):
                    raise EngineLoadError(self._last_error, engine=self.name) from exc
                raise
            seconds = time.perf_counter() - started
            after = await asyncio.to_thread(measure.sample)
            self._state = EngineState.LOADED
            self._last_error = None
            self._hint = ""
            report = LoadReport(
                seconds=seconds,
                ram_delta_bytes=after.rss_bytes - before.rss_bytes,
                vram_delta_bytes=measure.vram_delta(before, after),
            )
            self._measured_ram = max(report.ram_delta_bytes, 0)
            self._measured_vram = report.vram_delta_bytes
            log.info(
                "%s loaded in %.2fs (RSS %+.1f MB)",
                self.name,
                seconds,
                report.ram_delta_bytes / 1e6,
            )
            return report

    async def unload(self) -> UnloadReport:
        async with self._lock:
            if not self._is_loaded():
                if self._state is EngineState.FAILED:
                    self._state = EngineState.UNLOADED
                return UnloadReport(seconds=0.0, ram_freed_bytes=0, vram_freed_bytes=0)
            self._state, self._parked = EngineState.UNLOADING, False
            before = await asyncio.to_thread(measure.sample)
            started = time.perf_counter()
            await asyncio.to_thread(self._release_model)
            await asyncio.to_thread(measure.release_freed_memory)
            seconds = time.perf_counter() - started
            after = await asyncio.to_thread(measure.sample)
            self._state = EngineState.UNLOADED
            freed_vram = measure.vram_delta(after, before)
            log.info(
                "%s unloaded in %.2fs (RSS %+.1f MB)",
                self.name,
                seconds,
                (after.rss_bytes - before.rss_bytes) / 1e6,
            )
            return UnloadReport(
                seconds=seconds,
                ram_freed_bytes=before.rss_bytes - after.rss_bytes,
                vram_freed_bytes=freed_vram,
            )

    async def park(self) -> ParkReport:
        """Keep the model object, its weights in host RAM, and stop serving (``services.base``)."""
        async with self._lock:
            if self._parked:
                return ParkReport(
                    seconds=0.0, ram_kept_bytes=0, ram_delta_bytes=0, vram_freed_bytes=0
                )
            if self.park_refusal is not None:
                raise CannotPark(self.park_refusal, engine=self.name)
            if not self._is_loaded():
                raise EngineNotLoaded(f"engine is {self.state}: nothing to park", engine=self.name)
            before = await asyncio.to_thread(measure.sample)
            started = time.perf_counter()
            try:
                await asyncio.to_thread(self._park_model)
            except Exception as exc:  # still loaded and serving: the caller may unload instead
                raise EngineCallError(f"park failed: {exc}", engine=self.name) from exc
            seconds = time.perf_counter() - started
            after = await asyncio.to_thread(measure.sample)
            self._parked = True
            grew = after.rss_bytes - before.rss_bytes
            on_cpu = self.spec.device == "cpu"  # nothing moved: the weights hold what the load took
            self._parked_ram = (self._measured_ram or 0) if on_cpu else max(grew, 0)
            log.info("%s parked in %.2fs (RSS %+.1f MB)", self.name, seconds, grew / 1e6)
            return ParkReport(
                seconds=seconds,
                ram_kept_bytes=self._parked_ram,
                ram_delta_bytes=grew,
                vram_freed_bytes=measure.vram_delta(after, before),
            )

    async def _resume(self) -> LoadReport:
        """Copy a parked model back to its device (the lock is held): no file is read."""
        self._parked, self._state = False, EngineState.LOADING
        before = await asyncio.to_thread(measure.sample)
        started = time.perf_counter()
        try:
            await asyncio.to_thread(self._resume_model)
        except BaseException as exc:
            await asyncio.to_thread(self._release_model)
            self._state = EngineState.FAILED
            self._last_error = f"resume failed: {exc}"
            self._hint = "load it again: a load reads the model files"
            if isinstance(exc, Exception):
                raise EngineLoadError(self._last_error, engine=self.name) from exc
            raise
        seconds = time.perf_counter() - started
        after = await asyncio.to_thread(measure.sample)
        self._state, self._parked_ram = EngineState.LOADED, None
        log.info("%s resumed in %.3fs", self.name, seconds)
        return LoadReport(
            seconds=seconds,
            ram_delta_bytes=after.rss_bytes - before.rss_bytes,
            vram_delta_bytes=measure.vram_delta(before, after),
            resumed=True,
        )

    async def health(self) -> EngineHealth:
        state = self.state
        if state is EngineState.MISSING:
            missing = ", ".join(self._missing())
            return EngineHealth(state, f"model not on disk: {missing}", DOWNLOAD_HINT)
        return EngineHealth(state, self._last_error or "", self._hint)

    def memory(self) -> EngineMemory:
        serving = self._is_loaded() and not self._parked
        return EngineMemory(
            device=self.spec.device,
            estimated_vram_bytes=self.spec.estimated_vram_bytes,
            estimated_ram_bytes=self.spec.estimated_ram_bytes or self._size_on_disk(),
            measured_vram_bytes=self._measured_vram if serving else None,
            measured_ram_bytes=self._measured_ram if serving else None,
            parked_ram_bytes=self._parked_ram if self._parked else None,
        )

    # -- helpers -----------------------------------------------------------------------------

    def _require_loaded(self) -> None:
        if self._parked or not self._is_loaded():
            raise EngineNotLoaded(f"engine is {self.state}", engine=self.name)

    def _missing(self) -> list[str]:
        return [str(path) for path in self._model_paths() if not path.exists()]

    def _size_on_disk(self) -> int | None:
        total = 0
        for path in self._model_paths():
            if path.is_file():
                total += path.stat().st_size
            elif path.is_dir():
                total += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            else:
                return None
        return total
