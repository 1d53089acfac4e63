"""The VRAM planner: pure decisions about which engines sit on the GPU.

Nothing here touches a GPU, a clock or an engine. The caller describes the world (GPUs, the
reserve, engines with sizes, priorities and states) and applies the answer (llama-swap's router
design: the plan is a pure function, an effects interface carries it out):

    decide(name, ...)    one "load X": admit on a GPU, admit after evicting, CPU, or refuse
    pack(...)            from scratch: the GPU set with the most priority-weighted value
    feasible_modes(...)  when not everything fits: the maximal sets that do, best first

An engine on the GPU is worth ``priority + 1`` (priority 0 still counts a little). Eviction only
takes loaded, unleased, unpinned engines of strictly lower priority, and gives up the least value
that makes room. Engines are data: no model or engine names live here. Sizes are bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from orchestrator.gpu.placement import (
    EngineView,
    GpuView,
    Packing,
    available_bytes,
    budget_bytes,
    gib,
    placement,
    split,
)
from services.errors import VoiceOrchestratorError

MAX_ENGINES = 16


class PlanError(VoiceOrchestratorError, ValueError):
    """The planner was asked something it cannot answer: an unknown engine, too many engines."""

    code = "invalid_plan_request"
    status = 400


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
    _check_size(engines)
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
    room = {g.index: available_bytes(g, engines, reserve_bytes) for g in gpus}
    fitting = [g for g in gpus if room[g.index] >= need]
    if fitting:
        g = min(fitting, key=lambda g: (room[g.index] - need, g.index))
        message = f"{name} fits on GPU {g.index}: needs {gib(need)}, {gib(room[g.index])} available"
        return _admit(engine, g, engines, reserve_bytes, room[g.index], (), message)
    plans = []
    for g in gpus:
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
    return _cpu_or_refuse(engine, _no_room(engine, engines, gpus, reserve_bytes, room))


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


def _check_size(engines: Sequence[EngineView]) -> None:
    if len(engines) > MAX_ENGINES:
        raise PlanError(f"the planner handles at most {MAX_ENGINES} engines, got {len(engines)}")
    names = [e.name for e in engines]
    if len(set(names)) != len(names):
        raise PlanError(f"engine names must be unique: {', '.join(sorted(names))}")


def _find(name: str, engines: Sequence[EngineView]) -> EngineView:
    for engine in engines:
        if engine.name == name:
            return engine
    raise PlanError(f"unknown engine {name!r}")


def pack(engines: Sequence[EngineView], gpu: GpuView | None, reserve_bytes: int) -> Packing:
    """The GPU set with the most value within the budget (exact: 0/1 knapsack by value).

    Held engines already on the GPU stay; among equal values the smaller set in bytes wins.
    """
    _check_size(engines)
    if gpu is None:
        return placement(engines, (), 0)
    budget = budget_bytes(gpu, reserve_bytes)
    forced, candidates = split(engines, gpu)
    capacity = budget - sum(e.vram_bytes for e in forced)
    # best[v]: the fewest bytes that reach value v exactly, and which candidates do it
    best: dict[int, tuple[int, tuple[int, ...]]] = {0: (0, ())}
    for i, engine in enumerate(candidates):
        for value, (size, chosen) in list(best.items()):
            grown = size + engine.vram_bytes
            if grown > capacity:
                continue
            known = best.get(value + engine.value)
            if known is None or grown < known[0]:
                best[value + engine.value] = (grown, (*chosen, i))
    picked = [candidates[i] for i in best[max(best)][1]] if capacity >= 0 else []
    return placement(engines, [*forced, *picked], budget)


def feasible_modes(
    engines: Sequence[EngineView], gpu: GpuView | None, reserve_bytes: int, limit: int = 8
) -> list[Packing]:
    """The maximal GPU sets that fit (no other engine could join), most value first.

    When everything fits this is the one packing with everything; the first mode always
    carries as much value as ``pack``.
    """
    _check_size(engines)
    if gpu is None:
        return [placement(engines, (), 0)]
    budget = budget_bytes(gpu, reserve_bytes)
    forced, candidates = split(engines, gpu)
    capacity = budget - sum(e.vram_bytes for e in forced)
    sizes = [e.vram_bytes for e in candidates]
    if capacity < 0 or sum(sizes) <= capacity:
        return [pack(engines, gpu, reserve_bytes)]
    totals = [0] * (1 << len(candidates))
    for mask in range(1, len(totals)):
        low = mask & -mask
        totals[mask] = totals[mask ^ low] + sizes[low.bit_length() - 1]
    maximal = [
        mask
        for mask, total in enumerate(totals)
        if total <= capacity
        and all(mask >> i & 1 or total + size > capacity for i, size in enumerate(sizes))
    ]
    modes = [
        placement(engines, [*forced, *(e for i, e in enumerate(candidates) if m >> i & 1)], budget)
        for m in maximal
    ]
    modes.sort(key=lambda p: (-p.value, p.used_bytes, p.gpu))
    return modes[:limit]
