"""Host RAM for parked engines: whether parking one more fits, counting those already parked.

Parking moves an engine's weights off the GPU into host RAM; a CPU engine's weights are there
already, so parking it moves nothing. A park is admitted when the host's available memory, less
a reserve (``[gpu] host_reserve_mb``), holds what it moves; otherwise the engine is unloaded
instead, and the reason names the engines parked already (their weights are what fills it).
Pure, like the VRAM planner: the caller reads the host's memory and says what each engine moves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.config import EngineConfig
from orchestrator.gpu.catalog import Catalog
from orchestrator.gpu.placement import MIB, gib


@dataclass(frozen=True)
class HostRam:
    """The host's memory as the OS reports it (``available`` counts reclaimable cache)."""

    total_bytes: int
    available_bytes: int


def moved_when_parked(engine: EngineConfig, catalog: Catalog, vram_bytes: int | None) -> int:
    """Bytes parking moves into host RAM: none on the CPU; else the catalog's weights at the
    engine's precision, else its VRAM figure (measured or estimated: an upper bound, as it
    counts the runtime and the cache that parking drops)."""
    if engine.device == "cpu":
        return 0
    match = catalog.lookup(engine.adapter, engine.model, engine.compute_type)
    if match is not None:
        return int(match.entry.precisions[match.precision].weights_mb * MIB)
    if vram_bytes:
        return vram_bytes
    return int((engine.estimate_vram_mb or 0) * MIB)


def park_refusal(
    name: str,
    moves_bytes: int,
    parked: Mapping[str, int],
    host: HostRam,
    reserve_bytes: int,
) -> str | None:
    """None when ``name`` may park; else why not, with the numbers."""
    if moves_bytes <= 0:
        return None
    room = host.available_bytes - reserve_bytes
    if moves_bytes <= room:
        return None
    held = ", ".join(f"{n} {gib(b)}" for n, b in sorted(parked.items()) if b) or "none"
    return (
        f"host RAM cannot hold {name}'s weights ({gib(moves_bytes)}): {gib(host.available_bytes)}"
        f" available of {gib(host.total_bytes)}, {gib(reserve_bytes)} kept in reserve;"
        f" parked already: {held}"
    )


def host_summary(host: HostRam, parked: Mapping[str, int], reserve_bytes: int) -> dict[str, Any]:
    """The numbers ``/health`` shows: the host's RAM and what parked engines hold of it."""
    return {
        "total_bytes": host.total_bytes,
        "available_bytes": host.available_bytes,
        "reserve_bytes": reserve_bytes,
        "parked_bytes": sum(parked.values()),
        "parked": dict(sorted(parked.items())),
    }
