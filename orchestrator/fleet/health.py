"""Health as load balancers, monitors and operators read it: pure functions of engine status."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from enum import StrEnum
from typing import Any

from orchestrator.fleet.status import EngineStatus
from services.base import ProcessView


class Overall(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    DOWN = "down"


def overall(statuses: Sequence[EngineStatus], *, shutting_down: bool) -> Overall:
    """``down`` while stopping; ``degraded`` when any engine cannot be loaded now; else ``ok``
    (a parked engine can: it resumes)."""
    if shutting_down:
        return Overall.DOWN
    return Overall.OK if all(s.usable for s in statuses) else Overall.DEGRADED


def ready(statuses: Sequence[EngineStatus], route: Sequence[str], *, shutting_down: bool) -> bool:
    """Ready when every engine of the default voice route is loaded or can load right now."""
    if shutting_down:
        return False
    by_name = {s.name: s for s in statuses}
    return all(name in by_name and by_name[name].usable for name in route)


def engine_entry(status: EngineStatus) -> dict[str, Any]:
    return {
        "role": status.role,
        "adapter": status.adapter,
        "runtime": status.runtime,
        "model": status.model,
        "state": status.state,
        "device": status.memory.device,
        "memory": {k: v for k, v in asdict(status.memory).items() if k != "device"},
        "priority": status.priority,
        "loads": status.loads,
        "last_load_seconds": status.last_load_seconds,
        "last_unload_seconds": status.last_unload_seconds,
        # parked: weights in host RAM (memory.parked_ram_bytes), resumed without reading files
        "parks": status.parks,
        "resumes": status.resumes,
        "last_park_seconds": status.last_park_seconds,
        "last_resume_seconds": status.last_resume_seconds,
        "last_used": status.last_used,
        "leases": status.leases,
        "pinned": status.pinned,
        "last_error": status.detail or None,
        "hint": status.hint or None,
        "process": _process_entry(status.process),
        # how many sessions it serves at once (an LLM server queues the rest): planned, serving
        "concurrent_sessions": asdict(status.concurrency) if status.concurrency else None,
    }


def _process_entry(view: ProcessView | None) -> dict[str, Any] | None:
    """A managed engine's server process: state, pid, restarts and its last output lines."""
    if view is None:
        return None
    entry = asdict(view)
    entry["seconds_in_state"] = round(view.seconds_in_state, 1)
    entry["last_lines"] = list(view.last_lines[-10:])
    return entry


def summary(
    statuses: Sequence[EngineStatus],
    *,
    profile: str,
    hibernation: dict[str, Any],
    shutting_down: bool,
    credits: dict[str, Any] | None = None,
    vram: dict[str, Any] | None = None,
    host_ram: dict[str, Any] | None = None,
    uptime_s: float,
) -> dict[str, Any]:
    problems = [f"{s.name}: {s.detail}" for s in statuses if not s.usable]
    return {
        "status": overall(statuses, shutting_down=shutting_down),
        "profile": profile,
        "uptime_s": round(uptime_s, 1),
        "hibernation": hibernation,
        "engines": {s.name: engine_entry(s) for s in statuses},
        "problems": problems,
        "credits": credits,
        "vram": vram,
        "host_ram": host_ram,  # the host's RAM, and what parked engines hold of it
    }
