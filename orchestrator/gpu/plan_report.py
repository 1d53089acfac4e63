"""The plan report: which engines of a profile fit on a GPU, the modes when not all do, the cost.

What ``python -m orchestrator plan`` prints and the console's plan page shows, built by the same
functions so the two never disagree. Sizes come from measurements on this host, else the
catalog, else the engines' ``estimate_vram_mb`` (``planning_rows``); ``catalog_row`` plans a
catalog model the profile does not configure yet (what-if: "does PersonaPlex fit beside the
cascade on an L4?"). Reading the catalog, the measurements and the GPU touches disk and NVML:
async callers run these in a thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.config import AppConfig
from orchestrator.gpu.catalog import Catalog, catalog_files, engine_view, estimate, load_catalog
from orchestrator.gpu.measurements import MeasurementStore
from orchestrator.gpu.placement import MIB, EngineView, GpuView, Packing, gib
from orchestrator.gpu.planner import feasible_modes, pack
from orchestrator.gpu.telemetry import GPU_TYPES, GpuBackend, GpuType, backend_for, gpu_type_for

DAYS_PER_MONTH = 365 / 12
SCHEDULES = (("24/7", 24), ("8 h/day", 8), ("4 h/day", 4))


@dataclass(frozen=True)
class Target:
    """The GPU planned for: a named type, the detected one, or none."""

    name: str
    source: str
    gpu: GpuView | None
    gpu_type: GpuType | None


@dataclass(frozen=True)
class Row:
    """One engine in the plan: its planner view and where its size came from."""

    view: EngineView
    role: str
    source: str
    detail: str
    configured: bool


def planning_rows(config: AppConfig) -> tuple[Catalog, list[Row], list[str]]:
    """The catalog, a row per configured engine sized as this host knows best, and notes."""
    catalog = load_catalog(catalog_files(config.gpu.catalog))
    store = MeasurementStore.in_state_dir(config.state.dir)
    rows, notes = configured_rows(config, catalog, store)
    return catalog, rows, notes


def configured_rows(
    config: AppConfig, catalog: Catalog, store: MeasurementStore | None
) -> tuple[list[Row], list[str]]:
    rows, notes = [], []
    for name, engine in config.engines.items():
        found = estimate(engine, catalog, store)
        try:
            view = engine_view(name, engine, found)
        except ValueError as exc:
            notes.append(f"{exc}; left out of the plan")
            continue
        rows.append(Row(view, engine.role.value, found.source, found.detail, configured=True))
    return rows, notes


def catalog_row(ref: str, catalog: Catalog, rows: list[Row]) -> Row:
    """``MODEL[:PRECISION][@PRIORITY]``: a catalog entry planned with its own preferences.

    Raises ``UnknownModel`` or ``ValueError`` with the reason (the caller names ``ref``)."""
    text, _, priority_text = ref.partition("@")
    match = catalog.entry(text)
    priority = int(priority_text) if priority_text else match.entry.priority
    if not 0 <= priority <= 100:
        raise ValueError("priority must be 0-100")
    if any(row.view.name == match.key for row in rows):
        raise ValueError(f"an engine named {match.key!r} is already planned")
    entry = match.entry
    view = EngineView(match.key, priority, match.vram_bytes, entry.runs_on, entry.prefers)
    return Row(view, entry.role, "catalog", match.label, configured=False)


def find_target(gpu_name: str | None, config: AppConfig, backend: GpuBackend | None) -> Target:
    """The named GPU type, else the first GPU the backend (by default NVML) finds, else none."""
    if gpu_name:
        gpu_type = GPU_TYPES[gpu_name]
        view = GpuView(0, gpu_type.memory_bytes, gpu_type.memory_bytes)
        return Target(gpu_name, "table", view, gpu_type)
    samples = (backend or backend_for(config.gpu)).read()
    if not samples:
        return Target("none", "none", None, None)
    first = samples[0]
    # Planning from scratch: whatever is in use now (a running server included) is not ours.
    view = GpuView(first.index, first.total_bytes, first.free_bytes, first.used_bytes)
    return Target(first.name, "detected", view, gpu_type_for(first.name, first.total_bytes))


def price(config: AppConfig, target: Target) -> tuple[float, str]:
    """The profile's price when it is for this GPU, else the GPU type's default."""
    configured = config.costs.usd_per_hour
    profile_gpu = config.costs.gpu_type.lower().removeprefix("nvidia-")
    known = target.gpu_type
    if configured > 0 and (known is None or profile_gpu == known.name):
        return configured, f"profile {config.profile} [costs].usd_per_hour"
    if known is not None:
        return known.usd_per_hour, f"default for {known.name}, approximate on-demand"
    return configured, f"profile {config.profile} [costs].usd_per_hour"


def build_report(
    config: AppConfig, target: Target, rows: list[Row], notes: list[str]
) -> dict[str, Any]:
    """The plan as JSON-ready data (``plan --json``); raises ``PlanError`` when it cannot plan."""
    views = [row.view for row in rows]
    reserve = int(config.gpu.reserve_mb * MIB)
    best = pack(views, target.gpu, reserve)
    modes = feasible_modes(views, target.gpu, reserve)
    notes = list(notes)
    if target.gpu is None:
        notes.append("no GPU detected: planning CPU placements; GPU-only engines stay off")
    elif target.gpu.stranger_bytes:
        notes.append(f"{gib(target.gpu.stranger_bytes)} in use on the GPU now is left out")
    profile_gpu = config.costs.gpu_type.lower().removeprefix("nvidia-")
    if target.source == "table" and profile_gpu != target.name:
        notes.append(
            f"profile {config.profile} is set up for gpu_type {config.costs.gpu_type}:"
            f" add --profile {target.name} to plan that profile's engines where one exists"
        )
    usd, usd_source = price(config, target)
    gpu = target.gpu
    total = gpu.total_bytes if gpu else 0
    strangers = gpu.stranger_bytes if gpu else 0
    return {
        "profile": config.profile,
        "gpu": {
            "name": target.name,
            "source": target.source,
            "type": target.gpu_type.name if target.gpu_type else None,
            "total_bytes": total,
            "stranger_bytes": strangers,
            "reserve_bytes": reserve if gpu else 0,
            "budget_bytes": best.budget_bytes,
        },
        "engines": [_engine_dict(row, best) for row in rows],
        "vram": {
            "used_bytes": best.used_bytes,
            "left_bytes": total - strangers - best.used_bytes if gpu else 0,
            "left_above_reserve_bytes": best.left_bytes if gpu else 0,
        },
        "all_fit": all(view.name in best.gpu for view in views if view.wants_gpu) and bool(gpu),
        "modes": [mode.to_dict() for mode in modes],
        "cost": {
            "usd_per_hour": usd,
            "source": usd_source,
            "per_month_usd": {
                label: round(usd * hours * DAYS_PER_MONTH, 2) for label, hours in SCHEDULES
            },
        },
        "notes": notes,
    }


def _engine_dict(row: Row, best: Packing) -> dict[str, Any]:
    name = row.view.name
    where = "gpu" if name in best.gpu else "cpu" if name in best.cpu else "off"
    return {
        "name": name,
        "role": row.role,
        "priority": row.view.priority,
        "placement": where,
        "runs_on": row.view.runs_on.value,
        "vram_bytes": row.view.vram_bytes,
        "estimate_source": row.source,
        "estimate_detail": row.detail,
        "configured": row.configured,
    }


def format_report(report: dict[str, Any]) -> str:
    """``build_report``'s data as the table ``plan`` prints."""
    gpu, vram, cost = report["gpu"], report["vram"], report["cost"]
    if gpu["source"] == "none":
        where = "no GPU (CPU placements only)"
    else:
        where = f"{gpu['name']} ({gpu['source']}, {gib(gpu['total_bytes'])})"
    lines = [
        f"plan     profile {report['profile']}"
        + (f" ({report['profile_picked']})" if report.get("profile_picked") else "")
        + f" on {where}, reserve {gib(gpu['reserve_bytes'])}",
        "",
        f"{'engine':<20} {'role':<12} {'prio':>4}  {'where':<5} {'VRAM':>10}  estimate",
    ]
    for engine in report["engines"]:
        size = gib(engine["vram_bytes"]) if engine["runs_on"] != "cpu" else "-"
        origin = f"{engine['estimate_source']} {engine['estimate_detail']}"
        if not engine["configured"]:
            origin += " (--add)"
        lines.append(
            f"{engine['name']:<20} {engine['role']:<12} {engine['priority']:>4}"
            f"  {engine['placement']:<5} {size:>10}  {origin}"
        )
    lines.append("")
    if gpu["source"] != "none":
        lines.append(
            f"VRAM     used {gib(vram['used_bytes'])} of {gib(gpu['total_bytes'])},"
            f" {gib(vram['left_bytes'])} left ({gib(gpu['reserve_bytes'])} of it the reserve)"
        )
        lines += _format_modes(report)
    per_month = ", ".join(f"{label} ${usd:,.2f}" for label, usd in cost["per_month_usd"].items())
    lines.append(f"cost     ${cost['usd_per_hour']:.2f}/h ({cost['source']})")
    lines.append(f"         per month: {per_month}")
    lines += [f"note     {note}" for note in report["notes"]]
    return "\n".join(lines)


def _format_modes(report: dict[str, Any]) -> list[str]:
    if report["all_fit"]:
        return ["modes    everything fits on the GPU at once"]
    lines = ["modes    not everything fits at once; these sets do, best first (value: priority+1)"]
    for number, mode in enumerate(report["modes"], start=1):
        line = f"  {number}. gpu: {', '.join(mode['gpu']) or '-'} ({gib(mode['used_bytes'])})"
        if mode["cpu"]:
            line += f"; cpu: {', '.join(mode['cpu'])}"
        if mode["off"]:
            line += f"; off: {', '.join(mode['off'])}"
        lines.append(f"{line}; value {mode['value']}")
    return lines
