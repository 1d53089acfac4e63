"""The plan report: which engines of a profile fit on which GPU, the modes when not all do, the
cost.

What ``python -m orchestrator plan`` prints (``plan_format`` words it) and the console's plan
page shows, built by the same functions so the two never disagree. Sizes come from measurements
on this host, else the engines' ``estimate_vram_mb``, else the catalog (``planning_rows``);
``catalog_row`` plans a catalog model the profile does not configure yet (what-if: "does
PersonaPlex fit beside the cascade on an L4?"). The GPUs are a named type or a set of them
(``2x-t4-16gb``), or those detected; on several, each engine's place names its device.
Reading the catalog, the measurements and the GPU touches disk and NVML: async callers run
these in a thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.config import AppConfig
from orchestrator.gpu.catalog import Catalog, catalog_files, engine_view, estimate, load_catalog
from orchestrator.gpu.gpu_types import GpuSet, GpuType, gpu_type_for, parse_gpu_set
from orchestrator.gpu.measurements import MeasurementStore
from orchestrator.gpu.packing import feasible_modes, pack
from orchestrator.gpu.placement import MIB, EngineView, GpuView, Packing, gib
from orchestrator.gpu.telemetry import GpuBackend, backend_for

DAYS_PER_MONTH = 365 / 12
SCHEDULES = (("24/7", 24), ("8 h/day", 8), ("4 h/day", 4))


@dataclass(frozen=True)
class Target:
    """The GPUs planned for: a named type or set of them, the ones detected, or none.

    ``gpus``, ``gpu_types`` and ``labels`` go together, one entry per GPU in index order;
    a detected GPU of no named type has ``None`` for its type."""

    name: str
    source: str
    gpus: tuple[GpuView, ...] = ()
    gpu_types: tuple[GpuType | None, ...] = ()
    labels: tuple[str, ...] = ()

    @property
    def gpu_set(self) -> GpuSet | None:
        """The named types of every GPU, when each has one."""
        if not self.gpu_types or any(t is None for t in self.gpu_types):
            return None
        return GpuSet(tuple(t for t in self.gpu_types if t is not None))


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
        try:
            found = estimate(engine, catalog, store)
        except ValueError as exc:
            notes.append(f"engines.{name}.{exc}; left out of the plan")
            continue
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
    """The named GPU type or set (``2x-t4-16gb``, ``t4-16gb+gtx1660-6gb``), else the GPUs the
    backend (by default NVML) finds, else none. A bad name raises ``ValueError``."""
    if gpu_name:
        gpu_set = parse_gpu_set(gpu_name)
        views = tuple(
            GpuView(i, t.memory_bytes, t.memory_bytes) for i, t in enumerate(gpu_set.types)
        )
        names = tuple(t.name for t in gpu_set.types)
        return Target(gpu_set.name, "table", views, gpu_set.types, names)
    samples = (backend or backend_for(config.gpu)).read()
    if not samples:
        return Target("none", "none")
    # Planning from scratch: whatever is in use now (a running server included) is not ours.
    views = tuple(GpuView(s.index, s.total_bytes, s.free_bytes, s.used_bytes) for s in samples)
    types = tuple(gpu_type_for(s.name, s.total_bytes) for s in samples)
    labels = tuple(s.name for s in samples)
    return Target(_detected_name(labels), "detected", views, types, labels)


def _detected_name(labels: tuple[str, ...]) -> str:
    """``NVIDIA L4``; ``2x Tesla T4``; ``Tesla T4 + NVIDIA GeForce GTX 1660``."""
    runs: list[tuple[str, int]] = []
    for label in labels:
        if runs and runs[-1][0] == label:
            runs[-1] = (label, runs[-1][1] + 1)
        else:
            runs.append((label, 1))
    return " + ".join(label if n == 1 else f"{n}x {label}" for label, n in runs)


def price(config: AppConfig, target: Target) -> tuple[float, str]:
    """The profile's price when it is for these GPUs, else the GPU types' defaults."""
    configured = config.costs.usd_per_hour
    profile_gpu = _profile_gpu(config)
    known = target.gpu_set
    if configured > 0 and (known is None or profile_gpu == known.name):
        return configured, f"profile {config.profile} [costs].usd_per_hour"
    if known is not None and len(known.types) == 1:
        return known.usd_per_hour, f"default for {known.name}, approximate on-demand"
    if known is not None:
        parts = " + ".join(f"{t.name} {t.usd_per_hour:.2f}" for t in known.types)
        why = (
            f"sum of one-GPU defaults ({parts}), approximate on-demand; an upper bound, as one"
            " host is billed once"
        )
        return known.usd_per_hour, why
    return configured, f"profile {config.profile} [costs].usd_per_hour"


def _profile_gpu(config: AppConfig) -> str:
    return config.costs.gpu_type.lower().removeprefix("nvidia-")


def build_report(
    config: AppConfig, target: Target, rows: list[Row], notes: list[str]
) -> dict[str, Any]:
    """The plan as JSON-ready data (``plan --json``); raises ``PlanError`` when it cannot plan."""
    views = [row.view for row in rows]
    reserve = int(config.gpu.reserve_mb * MIB)
    gpus = target.gpus
    best = pack(views, gpus, reserve)
    modes = feasible_modes(views, gpus, reserve)
    notes = [*notes, *_target_notes(config, target, rows)]
    usd, usd_source = price(config, target)
    total = sum(g.total_bytes for g in gpus)
    strangers = sum(g.stranger_bytes for g in gpus)
    known = target.gpu_set
    return {
        "profile": config.profile,
        "gpu": {
            "name": target.name,
            "source": target.source,
            "type": known.name if known else None,
            "total_bytes": total,
            "stranger_bytes": strangers,
            "reserve_bytes": reserve if gpus else 0,
            "budget_bytes": best.budget_bytes,
            "devices": [_device_dict(target, i, best) for i in range(len(gpus))],
        },
        "engines": [_engine_dict(row, best) for row in rows],
        "vram": {
            "used_bytes": best.used_bytes,
            "left_bytes": total - strangers - best.used_bytes if gpus else 0,
            "left_above_reserve_bytes": best.left_bytes if gpus else 0,
        },
        "all_fit": all(view.name in best.gpu for view in views if view.wants_gpu) and bool(gpus),
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


def _target_notes(config: AppConfig, target: Target, rows: list[Row]) -> list[str]:
    notes = []
    if not target.gpus:
        notes.append("no GPU detected: planning CPU placements; GPU-only engines stay off")
    for gpu in target.gpus:
        if gpu.stranger_bytes:
            where = "on the GPU" if len(target.gpus) == 1 else f"on cuda:{gpu.index}"
            notes.append(f"{gib(gpu.stranger_bytes)} in use {where} now is left out")
    indices = {g.index for g in target.gpus}
    for row in rows:
        pin = row.view.gpu_pin
        if pin is not None and pin not in indices:
            have = ", ".join(f"cuda:{i}" for i in sorted(indices)) or "no GPU"
            notes.append(
                f"engine {row.view.name} is pinned to cuda:{pin} (engines.{row.view.name}.device);"
                f" this plan has {have}: it stays off"
            )
    profile_gpu = _profile_gpu(config)
    if target.source == "table" and profile_gpu not in {t.name for t in target.gpu_types if t}:
        notes.append(
            f"profile {config.profile} is set up for gpu_type {config.costs.gpu_type}:"
            f" add --profile {target.name} to plan that profile's engines where one exists"
        )
    return notes


def _device_dict(target: Target, position: int, best: Packing) -> dict[str, Any]:
    gpu = target.gpus[position]
    device = next(d for d in best.devices if d.index == gpu.index)
    gpu_type = target.gpu_types[position]
    return {
        "device": device.device,
        "name": target.labels[position],
        "type": gpu_type.name if gpu_type else None,
        "total_bytes": gpu.total_bytes,
        "stranger_bytes": gpu.stranger_bytes,
        "budget_bytes": device.budget_bytes,
        "used_bytes": device.used_bytes,
        "left_bytes": gpu.total_bytes - gpu.stranger_bytes - device.used_bytes,
        "engines": list(device.engines),
    }


def _engine_dict(row: Row, best: Packing) -> dict[str, Any]:
    name = row.view.name
    where = "gpu" if name in best.gpu else "cpu" if name in best.cpu else "off"
    index = best.device_of(name)
    return {
        "name": name,
        "role": row.role,
        "priority": row.view.priority,
        "placement": where,
        "device": f"cuda:{index}" if index is not None else "cpu" if where == "cpu" else None,
        "runs_on": row.view.runs_on.value,
        "vram_bytes": row.view.vram_bytes,
        "estimate_source": row.source,
        "estimate_detail": row.detail,
        "configured": row.configured,
    }
