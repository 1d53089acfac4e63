"""Packing from scratch: which engines go on which GPU, and the modes when not all fit.

    pack(engines, gpus, reserve)            the best placement over every GPU of the host
    feasible_modes(engines, gpus, reserve)  when not everything fits: the maximal sets that do

What "best" means, in order:

1. the most value on the GPUs (an engine is worth ``priority + 1``);
2. on several GPUs, the value spread out: the least sum over the GPUs of the square of the
   value each holds. Engines on one GPU share its compute and memory bandwidth, so the engines
   that matter most get a GPU with as little beside them as the sizes allow (the GPU sizing
   seed's Setup 4: the VLM, its top priority, alone on the second T4);
3. the fewest bytes;
4. among GPUs of the same size with nothing held on them, the lower index holds more value.

Held engines (leased, pinned, loading) stay on the GPU they are on; an engine pinned to a GPU
(``device = "cuda:N"``) goes there or nowhere. One GPU is a 0/1 knapsack by value, solved
exactly; several GPUs are searched exactly, branch and bound, up to ``MAX_NODES`` steps (then
the best placement found so far, which the search reaches first by putting each engine on the
GPU holding the least value). Pure functions of their arguments; sizes are bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from orchestrator.gpu.placement import (
    EngineView,
    GpuView,
    Packing,
    budget_bytes,
    placement,
    split,
)
from services.errors import VoiceOrchestratorError

MAX_ENGINES = 16
MAX_NODES = 20_000  # search steps for one several-GPU packing: a fraction of a second
MODES_MAX_CANDIDATES = 12  # on several GPUs, the modes are listed up to this many candidates


class PlanError(VoiceOrchestratorError, ValueError):
    """The planner was asked something it cannot answer: an unknown engine, too many engines."""

    code = "invalid_plan_request"
    status = 400


def check_size(engines: Sequence[EngineView]) -> None:
    if len(engines) > MAX_ENGINES:
        raise PlanError(f"the planner handles at most {MAX_ENGINES} engines, got {len(engines)}")
    names = [e.name for e in engines]
    if len(set(names)) != len(names):
        raise PlanError(f"engine names must be unique: {', '.join(sorted(names))}")


@dataclass(frozen=True)
class _Host:
    """The GPUs as the search sees them: room left for candidates and the value held already."""

    gpus: tuple[GpuView, ...]
    room: dict[int, int]
    held_value: dict[int, int]
    twins: dict[int, int]  # GPU index -> the first index of its interchangeable group


def _host(
    engines: Sequence[EngineView], gpus: Sequence[GpuView], reserve_bytes: int
) -> tuple[_Host, dict[str, int], list[EngineView]]:
    forced, candidates = split(engines, gpus)
    room = {
        g.index: budget_bytes(g, reserve_bytes) - sum(e.vram_bytes for e in forced[g.index])
        for g in gpus
    }
    held_value = {g.index: sum(e.value for e in forced[g.index]) for g in gpus}
    pins = {e.gpu_pin for e in candidates}
    twins: dict[int, int] = {}
    for g in gpus:
        free = not forced[g.index] and g.index not in pins
        first = next(
            (
                t.index
                for t in gpus
                if free
                and not forced[t.index]
                and t.index not in pins
                and budget_bytes(t, reserve_bytes) == budget_bytes(g, reserve_bytes)
            ),
            g.index,
        )
        twins[g.index] = first
    assigned = {e.name: index for index, held in forced.items() for e in held}
    return _Host(tuple(gpus), room, held_value, twins), assigned, candidates


def pack(engines: Sequence[EngineView], gpus: Sequence[GpuView], reserve_bytes: int) -> Packing:
    """The best placement of ``engines`` over ``gpus`` (see the module docstring)."""
    check_size(engines)
    if not gpus:
        return placement(engines, {}, (), reserve_bytes)
    host, assigned, candidates = _host(engines, gpus, reserve_bytes)
    if len(gpus) == 1:
        index = gpus[0].index
        picked = {e.name: index for e in _knapsack(candidates, host.room[index])}
    else:
        picked = _search(candidates, host)
    return placement(engines, {**assigned, **picked}, gpus, reserve_bytes)


def _knapsack(candidates: Sequence[EngineView], capacity: int) -> list[EngineView]:
    """The most value within ``capacity``; among equal values the fewest bytes."""
    if capacity < 0:
        return []
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
    return [candidates[i] for i in best[max(best)][1]]


def _search(candidates: Sequence[EngineView], host: _Host) -> dict[str, int]:
    """Several GPUs: branch and bound over (engine -> a GPU, or none) for the best key."""
    items = sorted(candidates, key=lambda e: (-e.value, -e.vram_bytes, e.name))
    room = dict(host.room)
    value = dict(host.held_value)
    chosen: list[int | None] = [None] * len(items)
    best: list[tuple[tuple[int, int, int], list[int | None]]] = []
    nodes = 0

    def bound(i: int) -> int:
        return sum(
            e.value
            for e in items[i:]
            if any(room[g.index] >= e.vram_bytes for g in host.gpus if e.allowed_on(g.index))
        )

    def visit(i: int, gained: int, used: int) -> None:
        nonlocal nodes
        nodes += 1
        spread = sum(v * v for v in value.values())
        if best:
            lower = (-(gained + bound(i)), spread, used)
            if lower > best[0][0] or nodes > MAX_NODES:
                return
        if i == len(items):
            key = (-gained, spread, used)
            if not best or key < best[0][0]:
                best[:] = [(key, list(chosen))]
            return
        engine = items[i]
        seen: set[tuple[int, int, int]] = set()
        for g in sorted(host.gpus, key=lambda g: (value[g.index], g.index)):
            index = g.index
            if not engine.allowed_on(index) or room[index] < engine.vram_bytes:
                continue
            state = (host.twins[index], room[index], value[index])
            if state in seen:
                continue  # an interchangeable GPU in the same state: the same subtree
            seen.add(state)
            room[index] -= engine.vram_bytes
            value[index] += engine.value
            chosen[i] = index
            visit(i + 1, gained + engine.value, used + engine.vram_bytes)
            room[index] += engine.vram_bytes
            value[index] -= engine.value
        chosen[i] = None
        visit(i + 1, gained, used)

    visit(0, 0, 0)
    placed = {e.name: g for e, g in zip(items, best[0][1], strict=True) if g is not None}
    return _canonical(placed, items, host)


def _canonical(placed: dict[str, int], items: Sequence[EngineView], host: _Host) -> dict[str, int]:
    """Among interchangeable GPUs, the lower index takes the group holding more value."""
    by_name = {e.name: e for e in items}
    groups: dict[int, list[int]] = {}
    for g in host.gpus:
        groups.setdefault(host.twins[g.index], []).append(g.index)
    result = dict(placed)
    for indices in groups.values():
        if len(indices) < 2:
            continue
        loads = [sorted(n for n, at in placed.items() if at == index) for index in indices]
        loads.sort(
            key=lambda names: (
                -sum(by_name[n].value for n in names),
                -sum(by_name[n].vram_bytes for n in names),
                names,
            )
        )
        for index, names in zip(sorted(indices), loads, strict=True):
            result.update(dict.fromkeys(names, index))
    return result


def feasible_modes(
    engines: Sequence[EngineView], gpus: Sequence[GpuView], reserve_bytes: int, limit: int = 8
) -> list[Packing]:
    """The maximal sets that fit on the GPUs (no other engine could join), most value first.

    When everything fits this is the one packing with everything; the first mode always
    carries as much value as ``pack``. On several GPUs with more than ``MODES_MAX_CANDIDATES``
    engines wanting one, only ``pack``'s placement is listed.
    """
    check_size(engines)
    if not gpus:
        return [placement(engines, {}, (), reserve_bytes)]
    best = pack(engines, gpus, reserve_bytes)
    host, assigned, candidates = _host(engines, gpus, reserve_bytes)
    if all(e.name in best.gpu for e in candidates) or all(r < 0 for r in host.room.values()):
        return [best]  # everything fits, or held engines alone overfill every GPU
    if len(gpus) > 1 and len(candidates) > MODES_MAX_CANDIDATES:
        return [best]
    masks = _fitting_sets(candidates, host)
    worth = {
        mask: (
            -sum(e.value for i, e in enumerate(candidates) if mask >> i & 1),
            sum(e.vram_bytes for i, e in enumerate(candidates) if mask >> i & 1),
            tuple(e.name for i, e in enumerate(candidates) if mask >> i & 1),
        )
        for mask in masks
    }
    modes = []
    for mask in sorted(masks, key=worth.__getitem__)[:limit]:
        chosen = [e for i, e in enumerate(candidates) if mask >> i & 1]
        if len(gpus) == 1:
            picked = dict.fromkeys((e.name for e in chosen), gpus[0].index)
        else:
            picked = _search(chosen, host)
        modes.append(placement(engines, {**assigned, **picked}, gpus, reserve_bytes))
    modes.sort(key=lambda p: (-p.value, p.used_bytes, p.gpu))
    if modes and modes[0].value < best.value:  # a search cut short: the packing leads
        modes.insert(0, best)
    return modes[:limit]


def _fitting_sets(candidates: Sequence[EngineView], host: _Host) -> list[int]:
    """Masks of the maximal candidate sets that can all be placed at once."""
    sizes = [e.vram_bytes for e in candidates]
    totals = [0] * (1 << len(candidates))
    for mask in range(1, len(totals)):
        low = mask & -mask
        totals[mask] = totals[mask ^ low] + sizes[low.bit_length() - 1]
    if len(host.gpus) == 1:
        capacity = next(iter(host.room.values()))
        return [
            mask
            for mask, total in enumerate(totals)
            if total <= capacity
            and all(mask >> i & 1 or total + size > capacity for i, size in enumerate(sizes))
        ]
    room = sum(max(r, 0) for r in host.room.values())
    known: dict[int, bool] = {}

    def fits(mask: int) -> bool:
        if totals[mask] > room:
            return False
        if mask not in known:
            chosen = [e for i, e in enumerate(candidates) if mask >> i & 1]
            known[mask] = _can_place(chosen, host.gpus, host.room)
        return known[mask]

    return [
        mask
        for mask in range(len(totals))
        if fits(mask)
        and all(mask >> i & 1 or not fits(mask | 1 << i) for i in range(len(candidates)))
    ]


def _can_place(
    engines: Sequence[EngineView], gpus: Sequence[GpuView], room: Mapping[int, int]
) -> bool:
    """Can every one of ``engines`` go on some GPU at once (a bin packing, by search)?"""
    if sum(e.vram_bytes for e in engines) > sum(max(r, 0) for r in room.values()):
        return False
    items = sorted(engines, key=lambda e: -e.vram_bytes)
    left = dict(room)
    pinned = any(e.gpu_pin is not None for e in items)  # then no two GPUs are interchangeable

    def place(i: int) -> bool:
        if i == len(items):
            return True
        engine = items[i]
        tried: set[int] = set()
        for g in gpus:
            index = g.index
            if not engine.allowed_on(index) or left[index] < engine.vram_bytes:
                continue
            if not pinned and left[index] in tried:
                continue  # same room left as a GPU tried already: the same subtree
            tried.add(left[index])
            left[index] -= engine.vram_bytes
            if place(i + 1):
                return True
            left[index] += engine.vram_bytes
        return False

    return place(0)
