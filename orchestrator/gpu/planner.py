"""The VRAM planner: pure decisions about which engines sit on which GPU.

Nothing here touches a GPU, a clock or an engine. The caller describes the world (GPUs, the
reserve, engines with sizes, priorities and states) and applies the answer (llama-swap's router
design: the plan is a pure function, an effects interface carries it out):

    decide(name, ...)    one "load X": admit on a GPU, admit after evicting, CPU, or refuse
    pack(...)            from scratch: the best placement over the host's GPUs (``packing``)
    feasible_modes(...)  when not everything fits: the maximal sets that do, best first

An engine on a GPU is worth ``priority + 1`` (priority 0 still counts a little). Eviction only
takes loaded, unleased, unpinned engines of strictly lower priority, and gives up the least value
that makes room. On several GPUs a load goes where ``pack`` would put it with what is loaded
kept in place, when it fits there now; an engine pinned to a GPU (``device = "cuda:N"``) goes
to that GPU or is refused, never to another GPU or the CPU. Engines are data: no model or
engine names live here. Sizes are bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from orchestrator.gpu.packing import MAX_ENGINES, PlanError, check_size, feasible_modes, pack
from orchestrator.gpu.placement import (
    Device,
    EngineView,
    GpuView,
    available_bytes,
    budget_bytes,
    gib,
)

__all__ = ["MAX_ENGINES", "Action", "Decision", "PlanError", "decide", "feasible_modes", "pack"]


class Action(StrEnum):
    GPU = "gpu"
    CPU = "cpu"
    REFUSE = "refuse"
    NOOP = "noop"


@dataclass(frozen=True)
class Decision:
    """What to do for one load: evict ``evict`` first, wait for ``required_free_bytes``, load."""

    engine: str
    action: Action
    message: str
    gpu_index: int | None = None
    evict: tuple[str, ...] = ()
    needed_bytes: int = 0
    available_bytes: int | None = None
    required_free_bytes: int | None = None

    @property
    def admitted(self) -> bool:
        return self.action in (Action.GPU, Action.CPU)

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "action": self.action.value,
            "gpu_index": self.gpu_index,
            "evict": list(self.evict),
            "needed_bytes": self.needed_bytes,
            "available_bytes": self.available_bytes,
            "required_free_bytes": self.required_free_bytes,
            "message": self.message,
        }


def decide(
    name: str, engines: Sequence[EngineView], gpus: Sequence[GpuView], reserve_bytes: int
) -> Decision:
    """Decide where ``name`` loads: admit > evict idle lower-priority engines > CPU > refuse."""
    check_size(engines)
    engine = _find(name, engines)
    if engine.loaded_on is not None:
        verb = "loading" if engine.loading else "loaded"
        return Decision(name, Action.NOOP, f"{name} is already {verb} on {engine.loaded_on}")
    need = engine.vram_bytes
    if not engine.wants_gpu:
        why = "its model runs on the CPU only" if not engine.runs_on_gpu else "its device is cpu"
        return Decision(name, Action.CPU, f"{name} runs on the CPU ({why})")
    if not gpus:
        return _cpu_or_refuse(engine, "there is no GPU on this host")
    allowed = [g for g in gpus if engine.allowed_on(g.index)]
    if not allowed:
        have = ", ".join(f"cuda:{g.index}" for g in gpus)
        return _cpu_or_refuse(engine, f"this host has {have} only")
    room = {g.index: available_bytes(g, engines, reserve_bytes) for g in allowed}
    fitting = [g for g in allowed if room[g.index] >= need]
    if fitting:
        planned = _planned_gpu(engine, engines, gpus, reserve_bytes) if len(gpus) > 1 else None
        g = min(fitting, key=lambda g: (g.index != planned, room[g.index] - need, g.index))
        message = f"{name} fits on GPU {g.index}: needs {gib(need)}, {gib(room[g.index])} available"
        if planned is not None and g.index == planned:
            message += " (where the plan puts it)"
        return _admit(engine, g, engines, reserve_bytes, room[g.index], (), message)
    plans = []
    for g in allowed:
        chosen = _cheapest_eviction(engine, g, engines, need - room[g.index])
        if chosen is not None:
            plans.append((_eviction_cost(chosen), g, chosen))
    if plans:
        _cost, g, chosen = min(plans, key=lambda p: (p[0], p[1].index))
        names = tuple(e.name for e in chosen)
        message = (
            f"{name} needs {gib(need)} on GPU {g.index}, {gib(room[g.index])} available:"
            f" evicting {', '.join(names)} (idle, lower priority) frees"
            f" {gib(sum(e.vram_bytes for e in chosen))}"
        )
        return _admit(engine, g, engines, reserve_bytes, room[g.index], names, message)
    return _cpu_or_refuse(engine, _no_room(engine, engines, allowed, reserve_bytes, room))


def _planned_gpu(
    engine: EngineView, engines: Sequence[EngineView], gpus: Sequence[GpuView], reserve: int
) -> int | None:
    """Where ``pack`` puts ``engine`` when every loaded engine stays where it is (marked held
    for this question only), so that loads one by one end where the plan says."""
    fixed = [
        dataclasses.replace(e, leased=True) if e.loaded_on is Device.GPU else e for e in engines
    ]
    return pack(fixed, gpus, reserve).device_of(engine.name)


def _admit(
    engine: EngineView,
    gpu: GpuView,
    engines: Sequence[EngineView],
    reserve_bytes: int,
    room: int,
    evict: tuple[str, ...],
    message: str,
) -> Decision:
    pending = sum(e.vram_bytes for e in engines if e.on_gpu(gpu.index) and e.loading)
    return Decision(
        engine.name,
        Action.GPU,
        message,
        gpu_index=gpu.index,
        evict=evict,
        needed_bytes=engine.vram_bytes,
        available_bytes=room,
        required_free_bytes=engine.vram_bytes + reserve_bytes + pending,
    )


def _cpu_or_refuse(engine: EngineView, why: str) -> Decision:
    if engine.cpu_ok:
        return Decision(engine.name, Action.CPU, f"{why}; {engine.name} goes on the CPU")
    if engine.gpu_pin is not None:
        message = (
            f"cannot load {engine.name}: it is pinned to cuda:{engine.gpu_pin} (its device);"
            f" {why}. A pinned engine never moves to another GPU or the CPU: set its device"
            ' to "cuda" to let the planner choose'
        )
    else:
        message = f"cannot load {engine.name}: {why}; it cannot run on the CPU"
    return Decision(engine.name, Action.REFUSE, message, needed_bytes=engine.vram_bytes)


def _evictable(engine: EngineView, gpu: GpuView, engines: Sequence[EngineView]) -> list[EngineView]:
    return [
        e for e in engines if e.on_gpu(gpu.index) and not e.held and e.priority < engine.priority
    ]


def _eviction_cost(chosen: Sequence[EngineView]) -> tuple[int, int, int, tuple[str, ...]]:
    names = tuple(sorted(e.name for e in chosen))
    return (sum(e.value for e in chosen), len(chosen), sum(e.vram_bytes for e in chosen), names)


def _cheapest_eviction(
    engine: EngineView, gpu: GpuView, engines: Sequence[EngineView], shortfall: int
) -> list[EngineView] | None:
    """The set of evictable engines that frees ``shortfall`` giving up the least value."""
    candidates = _evictable(engine, gpu, engines)
    if sum(e.vram_bytes for e in candidates) < shortfall:
        return None
    best: list[EngineView] | None = None
    for mask in range(1, 1 << len(candidates)):
        chosen = [e for i, e in enumerate(candidates) if mask >> i & 1]
        if sum(e.vram_bytes for e in chosen) < shortfall:
            continue
        if best is None or _eviction_cost(chosen) < _eviction_cost(best):
            best = chosen
    return best


def _no_room(
    engine: EngineView,
    engines: Sequence[EngineView],
    gpus: Sequence[GpuView],
    reserve_bytes: int,
    room: dict[int, int],
) -> str:
    """The numbers behind a refusal: needed, free, reserve, strangers, what holds the rest."""
    parts = [f"it needs {gib(engine.vram_bytes)} of VRAM"]
    for g in gpus:
        cap = budget_bytes(g, reserve_bytes)
        line = (
            f"GPU {g.index}: {gib(g.total_bytes)} total, {gib(g.free_bytes)} free,"
            f" {gib(reserve_bytes)} reserve, {gib(g.stranger_bytes)} used by other processes,"
            f" {gib(max(room[g.index], 0))} available"
        )
        if engine.vram_bytes > cap:
            line += f"; it can never fit there ({gib(cap)} for our engines in all)"
        ours = [e for e in engines if e.on_gpu(g.index)]
        held = [f"{e.name} {gib(e.vram_bytes)} ({_why_held(e)})" for e in ours if e.held]
        kept = [
            f"{e.name} {gib(e.vram_bytes)} (priority {e.priority})"
            for e in ours
            if not e.held and e.priority >= engine.priority
        ]
        freeable = sum(e.vram_bytes for e in _evictable(engine, g, engines))
        line += f"; held: {', '.join(held) or 'nothing'}"
        if kept:
            line += f"; not lower priority than {engine.priority}: {', '.join(kept)}"
        line += f"; evicting every idle lower-priority engine frees {gib(freeable)}"
        parts.append(line)
    return ". ".join(parts)


def _why_held(engine: EngineView) -> str:
    reasons = [
        label
        for label, flag in (
            ("leased", engine.leased),
            ("pinned", engine.pinned),
            ("loading", engine.loading),
        )
        if flag
    ]
    return ", ".join(reasons)


def _find(name: str, engines: Sequence[EngineView]) -> EngineView:
    for engine in engines:
        if engine.name == name:
            return engine
    raise PlanError(f"unknown engine {name!r}")
