"""What the console shows, as plain data: one snapshot of the runtime, built on demand.

Pages render it, ``/api/snapshot`` returns it, and the live stream rebuilds it after each bus
event. Building it reads engine health, the last transition and the credit ledger; it never
touches the ladder's activity (console reads are not voice activity).
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from orchestrator.app.runtime import Runtime
from orchestrator.config import HibernationConfig
from orchestrator.core.idle import ORDER, IdleState
from orchestrator.fleet import health
from orchestrator.fleet.status import EngineStatus


def engine_view(status: EngineStatus) -> dict[str, Any]:
    memory = status.memory
    return {
        "name": status.name,
        "role": status.role,
        "adapter": status.adapter,
        "runtime": str(status.runtime),
        "model": status.model,
        "state": status.state,
        "device": memory.device,
        "ram_estimated": memory.estimated_ram_bytes,
        "ram_measured": memory.measured_ram_bytes,
        "vram_estimated": memory.estimated_vram_bytes,
        "vram_measured": memory.measured_vram_bytes,
        "ram_parked": memory.parked_ram_bytes,
        "resumes": status.resumes,
        "resume_s": status.last_resume_seconds,
        "load_s": status.last_load_seconds,
        "unload_s": status.last_unload_seconds,
        "loads": status.loads,
        "last_used": status.last_used,
        "pinned": status.pinned,
        "leases": status.leases,
        "priority": status.priority,
        "detail": status.detail,
        "hint": status.hint,
        "process": None if status.process is None else asdict(status.process),
    }


def ladder_view(config: HibernationConfig) -> list[dict[str, Any]]:
    """Each idle state: when it begins and what entering it does."""
    thresholds = config.thresholds()
    return [
        {
            "state": state.value,
            "begins_s": thresholds.begins(state),
            "actions": {
                "unload_roles": [str(role) for role in config.actions[state].unload_roles],
                "park_roles": [str(role) for role in config.actions[state].park_roles],
                "stop_processes": config.actions[state].stop_processes,
                "host_power_off": config.actions[state].host_power_off,
                "telemetry_interval_s": config.actions[state].telemetry_interval_s,
            },
        }
        for state in ORDER
    ]


def _state_since(runtime: Runtime) -> float | None:
    last = runtime.store.transitions(limit=1)
    if last and last[0].target == runtime.hibernator.state.value:
        return last[0].at
    return None


async def hibernation_view(runtime: Runtime) -> dict[str, Any]:
    summary = runtime.hibernation_summary()
    state = IdleState(summary["state"])
    following = ORDER[state.depth + 1].value if state is not IdleState.DORMANT else None
    return {
        **summary,
        "state_since": await asyncio.to_thread(_state_since, runtime),
        "next_state": following if summary["next_step_at"] is not None else None,
        "ladder": ladder_view(runtime.config.hibernation),
    }


async def snapshot(runtime: Runtime) -> dict[str, Any]:
    statuses = await runtime.fleet.statuses()
    hibernation, credits, vram = await asyncio.gather(
        hibernation_view(runtime),
        asyncio.to_thread(runtime.credits),
        runtime.fleet.vram_budget(),
    )
    return {
        "now": runtime.clock(),
        "status": str(health.overall(statuses, shutting_down=runtime.shutting_down)),
        "profile": runtime.config.profile,
        "hibernation": hibernation,
        "engines": [engine_view(status) for status in statuses],
        "credits": credits,
        "vram": vram,
        "sessions": runtime.session_summaries(),
    }


async def transitions_view(runtime: Runtime, limit: int = 50) -> list[dict[str, Any]]:
    """The latest transitions, newest first, with the memory each one freed."""
    records = await asyncio.to_thread(runtime.store.transitions, limit=limit)
    return [transition_view(asdict(record)) for record in reversed(records)]


def transition_view(record: dict[str, Any]) -> dict[str, Any]:
    before, after = record.get("memory_before") or {}, record.get("memory_after") or {}
    return {
        **record,
        "rss_freed": _freed(before.get("rss_bytes"), after.get("rss_bytes")),
        "vram_freed": _freed(before.get("vram_bytes"), after.get("vram_bytes")),
    }


def _freed(before: int | None, after: int | None) -> int | None:
    return None if before is None or after is None else before - after
