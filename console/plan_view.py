"""The plan page's data: the planner's fit table for the detected GPU and every named GPU type.

Each column is ``python -m orchestrator plan [--gpu TYPE] --json`` for this server's profile:
the same functions (``orchestrator.gpu.plan_report``) with the same sizes (measured on this host,
else the catalog, else the engine's estimate) and prices, so the console and the CLI never
disagree. Reading the catalog and the measurements touches disk: callers run this in a thread.
"""

from __future__ import annotations

import asyncio
from typing import Any

from orchestrator.app.runtime import Runtime
from orchestrator.config import AppConfig
from orchestrator.gpu.gpu_types import GPU_TYPES
from orchestrator.gpu.plan_report import Row, Target, build_report, find_target, planning_rows
from orchestrator.gpu.planner import PlanError
from orchestrator.gpu.telemetry import GpuBackend


def plan_table(config: AppConfig, backend: GpuBackend | None) -> dict[str, Any]:
    """``{"columns": [report per GPU], "engines": [row per engine], "notes": [...]}``.

    The first column is the GPU this host has (or "none"); then each named type. A type the
    planner cannot plan for says why in its column instead of failing the page."""
    _catalog, rows, notes = planning_rows(config)
    targets = [find_target(None, config, backend)]
    targets += [find_target(name, config, backend) for name in GPU_TYPES]
    columns = [_column(config, target, rows, notes) for target in targets]
    engines = [
        {
            "name": row.view.name,
            "role": row.role,
            "priority": row.view.priority,
            "vram_bytes": row.view.vram_bytes,
            "runs_on": row.view.runs_on.value,
            "estimate": f"{row.source} {row.detail}".strip(),
            "placements": [column["placements"].get(row.view.name, "-") for column in columns],
        }
        for row in rows
    ]
    return {"profile": config.profile, "columns": columns, "engines": engines, "notes": notes}


def _column(config: AppConfig, target: Target, rows: list[Row], notes: list[str]) -> dict[str, Any]:
    try:
        report = build_report(config, target, rows, notes)
    except PlanError as exc:
        error = str(exc)
        return {
            "name": target.name,
            "source": target.source,
            "error": error,
            "notes": [],
            "placements": {},
        }
    # The profile's own notes are the same in every column; keep what is about this GPU.
    own = [note for note in report["notes"] if note not in notes]
    return {
        "name": target.name,
        "source": target.source,
        "error": None,
        "gpu": report["gpu"],
        "vram": report["vram"],
        "all_fit": report["all_fit"],
        "modes": report["modes"],
        "cost": report["cost"],
        "notes": own,
        "devices": report["gpu"]["devices"],
        "placements": {engine["name"]: _where(engine, report) for engine in report["engines"]},
    }


def _where(engine: dict[str, Any], report: dict[str, Any]) -> str:
    """gpu, cpu or off; on a host of several GPUs, the GPU by its device (cuda:1)."""
    several = len(report["gpu"]["devices"]) > 1
    return (
        str(engine["device"]) if several and engine["placement"] == "gpu" else engine["placement"]
    )


async def plan_of(runtime: Runtime) -> dict[str, Any]:
    """``plan_table`` for this server, off the event loop (it reads files and the GPU)."""
    admission = runtime.fleet.admission
    backend = admission.backend if admission is not None else None
    return await asyncio.to_thread(plan_table, runtime.config, backend)
