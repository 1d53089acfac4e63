"""Admission before every load: the planner's decision, carried out on the fleet.

One lock serialises decisions, so two loads never both count the same free VRAM. A decision to
evict unloads idle lower-priority engines (an engine that got leased meanwhile is skipped and
the decision is taken again), then waits until the GPU really shows the memory free before the
load starts. A refusal says why, with the numbers.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.config import AppConfig, EngineConfig
from orchestrator.gpu.catalog import (
    Catalog,
    catalog_files,
    engine_key,
    engine_view,
    estimate,
    load_catalog,
)
from orchestrator.gpu.measurements import MeasurementStore
from orchestrator.gpu.placement import MIB, Device, EngineView, vram_budget
from orchestrator.gpu.planner import Action, Decision, decide
from orchestrator.gpu.telemetry import GpuBackend, backend_for, gpu_views, wait_for_vram_recovery
from services.errors import EngineError

log = logging.getLogger(__name__)
MAX_ROUNDS = 3


class AdmissionRefused(EngineError):
    """No room for the engine on the GPU, and it may not run on the CPU."""

    code = "insufficient_vram"
    transient = True


@dataclass(frozen=True)
class EngineState:
    """What the fleet tells admission about one engine right now."""

    config: EngineConfig
    loaded: bool
    loading: bool
    held: bool
    pinned: bool
    gpu_index: int | None = None  # the GPU it was placed on (None: its device's, else 0)


class Admission:
    def __init__(
        self,
        config: AppConfig,
        *,
        backend: GpuBackend | None = None,
        catalog: Catalog | None = None,
        store: MeasurementStore | None = None,
        owners: Callable[[], Mapping[int, str]] | None = None,
    ) -> None:
        self.config = config
        self.backend = backend or backend_for(config.gpu)
        self.catalog = catalog or load_catalog(catalog_files(config.gpu.catalog))
        self.store = store if store is not None else MeasurementStore.in_state_dir(config.state.dir)
        self.reserve_bytes = int(config.gpu.reserve_mb * MIB)
        self._lock = asyncio.Lock()
        # Our processes on the GPU: this one, plus managed engine servers as they are added.
        self.owners = owners or (lambda: {os.getpid(): "orchestrator"})

    def views(self, engines: Mapping[str, EngineState]) -> list[EngineView]:
        views = []
        for name, state in engines.items():
            config = state.config
            on = Device.CPU if config.device == "cpu" else Device.GPU
            try:
                found = estimate(config, self.catalog, self.store)
            except ValueError as exc:
                raise ValueError(f"engines.{name}.{exc}") from None
            index = state.gpu_index if state.gpu_index is not None else config.gpu_pin or 0
            views.append(
                engine_view(
                    name,
                    config,
                    found,
                    loaded_on=on if (state.loaded or state.loading) else None,
                    gpu_index=index,
                    loading=state.loading,
                    leased=state.held,
                    pinned=state.pinned,
                )
            )
        return views

    async def admit(
        self,
        name: str,
        engines: Callable[[], Mapping[str, EngineState]],
        unload: Callable[[str], Awaitable[bool]],
    ) -> Decision:
        """Decide for ``name`` and carry it out; ``AdmissionRefused`` when there is no room."""
        async with self._lock:
            for _ in range(MAX_ROUNDS):
                decision = await self._decide(name, engines())
                if decision.action is Action.REFUSE:
                    raise AdmissionRefused(decision.message, engine=name)
                if decision.action is not Action.GPU or not decision.evict:
                    return decision
                log.info("%s", decision.message)
                evicted = [await unload(victim) for victim in decision.evict]
                if not all(evicted):
                    continue  # one was leased in the meantime: decide again
                await wait_for_vram_recovery(
                    self.backend,
                    decision.required_free_bytes or 0,
                    gpu_index=decision.gpu_index or 0,
                    timeout_s=self.config.gpu.recovery_timeout_s,
                    poll_s=self.config.gpu.recovery_poll_s,
                )
                return decision
        raise AdmissionRefused(f"could not make room for {name}: engines kept getting leased")

    async def _decide(self, name: str, engines: Mapping[str, EngineState]) -> Decision:
        current = {n: s for n, s in engines.items() if n != name}
        target = engines[name]
        current[name] = EngineState(target.config, False, False, False, target.pinned, None)
        try:
            views = self.views(current)
        except ValueError as exc:  # an engine with no size at all cannot be planned
            raise AdmissionRefused(str(exc), engine=name) from None
        samples = await asyncio.to_thread(self.backend.read)
        gpus = gpu_views(samples, self.owners())
        if len(gpus) > 1:  # the plan's search over several GPUs may take a moment: off the loop
            return await asyncio.to_thread(decide, name, views, gpus, self.reserve_bytes)
        return decide(name, views, gpus, self.reserve_bytes)

    def record(self, config: EngineConfig, vram_bytes: int | None) -> None:
        """Keep a measured VRAM figure so the next plan uses it instead of the estimate."""
        if vram_bytes is not None and vram_bytes > 0:
            self.store.record_measurement(engine_key(config), vram_bytes)

    async def budget(self, engines: Mapping[str, EngineState]) -> dict[str, Any] | None:
        """The VRAM budget for the health summary (None without a GPU): the first GPU's figures
        at the top, as one GPU has always shown them, and every GPU's under ``gpus``."""
        samples = await asyncio.to_thread(self.backend.read)
        if not samples:
            return None
        try:
            views = self.views(engines)
        except ValueError:
            return None
        gpus = [
            {
                "name": sample.name,
                "device": f"cuda:{gpu.index}",
                **vram_budget(gpu, views, self.reserve_bytes),
                "engines": [v.name for v in views if v.on_gpu(gpu.index)],
            }
            for sample, gpu in zip(samples, gpu_views(samples, self.owners()), strict=True)
        ]
        return {**gpus[0], "gpus": gpus}
