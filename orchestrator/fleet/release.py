"""Giving memory back beyond a plain unload: parking engines, and stopping server processes.

``park`` keeps an engine's weights in host RAM and frees the device (``services.base``: parked);
an engine that cannot park, or whose weights host RAM cannot hold (``HostRoom`` asks the host
RAM planner, ``orchestrator.gpu.host_ram``), is unloaded instead and the outcome says why.
``stop_process`` stops a managed engine's server (DORMANT). Both run under the engine's gate,
as an unload does, and skip an engine that is leased, waited for or pinned.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import psutil

from orchestrator.fleet.records import EngineRecord, ParkOutcome, UnloadOutcome
from orchestrator.gpu.catalog import Catalog
from orchestrator.gpu.host_ram import (
    HostRam,
    host_summary,
    moved_when_parked,
    park_refusal,
)
from services.base import Parkable, ProcessBacked
from services.errors import CannotPark, EngineError


def read_host_ram() -> HostRam:
    memory = psutil.virtual_memory()
    return HostRam(total_bytes=memory.total, available_bytes=memory.available)


class HostRoom:
    """Whether host RAM holds an engine's weights once parked, counting those parked already."""

    def __init__(
        self,
        records: Mapping[str, EngineRecord],
        catalog: Catalog,
        reserve_bytes: int,
        read: Callable[[], HostRam] = read_host_ram,
    ) -> None:
        self._records = records
        self._catalog = catalog
        self._reserve = reserve_bytes
        self._read = read

    def parked(self) -> dict[str, int]:
        """Host RAM each parked engine holds (0 where it cannot be measured)."""
        return {
            name: record.engine.memory().parked_ram_bytes or 0
            for name, record in self._records.items()
            if record.parked
        }

    def refusal(self, name: str, record: EngineRecord) -> str | None:
        config = record.effective_config()
        vram = (
            record.engine.memory().measured_vram_bytes
            or record.engine.memory().estimated_vram_bytes
        )
        moves = moved_when_parked(config, self._catalog, vram)
        if moves <= 0:
            return None  # a CPU engine: its weights are in host RAM already
        return park_refusal(name, moves, self.parked(), self._read(), self._reserve)

    def summary(self) -> dict[str, object]:
        return host_summary(self._read(), self.parked(), self._reserve)


def _busy(record: EngineRecord) -> str:
    return f"in use by {record.leases + record.waiting} request(s)"


async def park(
    name: str, record: EngineRecord, room: HostRoom, *, respect_pin: bool = True
) -> ParkOutcome:
    """Park ``name``, or unload it where it cannot park (see the module docstring)."""
    async with record.gate:
        if respect_pin and record.pinned:
            return ParkOutcome(name, False, "pinned")
        if record.held:
            return ParkOutcome(name, False, _busy(record))
        engine = record.engine
        if not record.loaded:
            return ParkOutcome(name, False, f"already {engine.state}")
        why = "its adapter has no parked state"
        if isinstance(engine, Parkable):
            refused = room.refusal(name, record)
            why = refused or why
            if refused is None:
                try:
                    report = await engine.park()
                except CannotPark as exc:
                    why = exc.message
                except EngineError as exc:  # it stays loaded: the next state's unload frees it
                    return ParkOutcome(name, False, f"park failed: {exc.message}")
                else:
                    record.parks += 1
                    record.last_park = report
                    return ParkOutcome(name, True, parked=report)
        unloaded = await engine.unload()
    return ParkOutcome(name, True, f"cannot park ({why}): unloaded instead", unloaded=unloaded)


async def stop_process(name: str, record: EngineRecord) -> UnloadOutcome | None:
    """Stop a managed engine's server process, loaded or not; None when it has no process."""
    engine = record.engine
    if not isinstance(engine, ProcessBacked):
        return None
    async with record.gate:
        if record.pinned:
            return UnloadOutcome(name, False, "pinned")
        if record.held:
            return UnloadOutcome(name, False, _busy(record))
        view = engine.process_view()
        if view is None or view.state in ("stopped", "failed"):
            return UnloadOutcome(name, False, "process not running")
        report = await engine.stop_process()
    return UnloadOutcome(name, True, "process stopped", report=report)
