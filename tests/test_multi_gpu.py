"""Several GPUs on one host: the packing per device (the GPU sizing seed's setups), pins to a
device, one load at a time ending where the plan says, and the packing's optimum checked
against brute force."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.gpu.catalog import load_catalog
from orchestrator.gpu.gpu_types import GPU_TYPES, parse_gpu_set
from orchestrator.gpu.packing import feasible_modes, pack
from orchestrator.gpu.placement import GIB, MIB, Device, EngineView, GpuView, RunsOn
from orchestrator.gpu.planner import Action, decide

RESERVE = 1 * GIB
SEED = ("sizing-asr", "sizing-translation", "sizing-llm", "sizing-tts", "sizing-vlm")


def gb(value: float) -> int:
    return int(value * GIB)


def host(name: str) -> list[GpuView]:
    """The GPUs of a named set, empty, as ``plan --gpu NAME`` plans them."""
    types = parse_gpu_set(name).types
    return [GpuView(i, t.memory_bytes, t.memory_bytes) for i, t in enumerate(types)]


def seed_views(**pins: int) -> list[EngineView]:
    """The sizing seed's five roles from the catalog; ``pins`` pins some to a GPU."""
    catalog = load_catalog()
    views = []
    for ref in SEED:
        match = catalog.entry(ref)
        entry = match.entry
        view = EngineView(match.key, entry.priority, match.vram_bytes, entry.runs_on, entry.prefers)
        views.append(dataclasses.replace(view, gpu_pin=pins.get(match.key.removeprefix("sizing-"))))
    return views


def on_devices(views: Sequence[EngineView], gpus: Sequence[GpuView]) -> list[set[str]]:
    return [set(d.engines) for d in pack(views, gpus, RESERVE).devices]


# -- the seed's setups ------------------------------------------------------------------------


def test_setup_4_puts_the_vlm_alone_on_the_second_t4() -> None:
    plan = pack(seed_views(), host("2x-t4-16gb"), RESERVE)
    assert [set(d.engines) for d in plan.devices] == [
        {"sizing-llm", "sizing-tts"},
        {"sizing-vlm"},
    ]
    assert [d.used_bytes for d in plan.devices] == [gb(10.5), gb(4)]
    assert set(plan.cpu) == {"sizing-asr", "sizing-translation"}
    assert plan.used_bytes == gb(14.5)
    assert plan.budget_bytes == 2 * gb(15)  # each T4 less its own reserve


def test_setup_2_the_gtx_1660_takes_the_vlm_unless_pins_keep_it_spare() -> None:
    gpus = host("t4-16gb+gtx1660-6gb")
    assert [g.total_bytes for g in gpus] == [gb(16), gb(6)]
    assert on_devices(seed_views(), gpus) == [{"sizing-llm", "sizing-tts"}, {"sizing-vlm"}]
    # The VLM pinned to the T4: the TTS (4.5 GiB, 5 GiB of room) spreads onto the 1660 instead.
    assert on_devices(seed_views(vlm=0), gpus) == [{"sizing-llm", "sizing-vlm"}, {"sizing-tts"}]
    # The seed keeps all three on the T4 and the 1660 as a spare: pins say so.
    pinned = on_devices(seed_views(llm=0, tts=0, vlm=0), gpus)
    assert pinned == [{"sizing-llm", "sizing-tts", "sizing-vlm"}, set()]


def test_one_gpu_is_the_seeds_setup_1() -> None:
    plan = pack(seed_views(), host("t4-16gb"), RESERVE)
    assert set(plan.devices[0].engines) == {"sizing-llm", "sizing-tts", "sizing-vlm"}
    assert plan.devices[0].device == "cuda:0"
    assert gb(16) - plan.used_bytes == gb(1.5)


def test_the_most_value_still_comes_first_on_several_gpus() -> None:
    """Spreading never costs an engine its place: 3 x 7 GiB on two 16 GiB cards (15 each
    after the reserve) all go on, two of them sharing a card."""
    views = [EngineView(f"e{i}", 50, gb(7), RunsOn.GPU) for i in range(3)]
    plan = pack(views, host("2x-t4-16gb"), RESERVE)
    assert set(plan.gpu) == {"e0", "e1", "e2"}
    assert sorted(len(d.engines) for d in plan.devices) == [1, 2]
    assert len(plan.devices[0].engines) == 2  # the lower index holds more of two like GPUs


# -- pins -------------------------------------------------------------------------------------


def test_a_pinned_engine_goes_on_its_gpu() -> None:
    devices = on_devices(seed_views(tts=1), host("2x-t4-16gb"))
    assert "sizing-tts" in devices[1]
    decision = decide("sizing-tts", seed_views(tts=1), host("2x-t4-16gb"), RESERVE)
    assert (decision.action, decision.gpu_index) == (Action.GPU, 1)


def test_a_pinned_engine_that_does_not_fit_is_refused_not_moved() -> None:
    gpus = host("t4-16gb+gtx1660-6gb")
    views = seed_views(llm=1)  # 6 GiB pinned to the GTX 1660: 5 GiB after the reserve
    plan = pack(views, gpus, RESERVE)
    assert "sizing-llm" in plan.off and "sizing-llm" not in plan.cpu
    decision = decide("sizing-llm", views, gpus, RESERVE)
    assert decision.action is Action.REFUSE
    assert "pinned to cuda:1 (its device)" in decision.message
    assert "GPU 1: 6.00 GiB total" in decision.message
    assert "can never fit there (5.00 GiB for our engines in all)" in decision.message
    assert "GPU 0" not in decision.message  # the T4 was never a choice
    assert 'set its device to "cuda"' in decision.message


def test_a_pin_to_a_gpu_the_host_lacks_is_refused() -> None:
    views = [EngineView("asr", 80, gb(1), RunsOn.GPU_OR_CPU, gpu_pin=1)]
    decision = decide("asr", views, host("t4-16gb"), RESERVE)
    assert decision.action is Action.REFUSE  # not the CPU either, though the model allows it
    assert "pinned to cuda:1" in decision.message
    assert "this host has cuda:0 only" in decision.message
    assert pack(views, host("t4-16gb"), RESERVE).off == ("asr",)


def test_a_pinned_engine_is_evicted_for_on_its_own_gpu_only() -> None:
    gpus = [GpuView(0, gb(16), gb(16)), GpuView(1, gb(16), gb(4))]
    views = [
        EngineView("idle", 10, gb(11), loaded_on=Device.GPU, gpu_index=1),
        EngineView("new", 50, gb(6), RunsOn.GPU, gpu_pin=1),
    ]
    decision = decide("new", views, gpus, RESERVE)
    assert (decision.action, decision.gpu_index, decision.evict) == (Action.GPU, 1, ("idle",))


# -- one load at a time -----------------------------------------------------------------------


def load_in_turn(views: list[EngineView], gpus: list[GpuView], order: Sequence[str]) -> None:
    """Decide each load in ``order`` as admission does, then count it loaded where it went."""
    for name in order:
        decision = decide(name, views, gpus, RESERVE)
        assert decision.action is Action.GPU, decision.message
        assert decision.gpu_index is not None
        at = next(i for i, v in enumerate(views) if v.name == name)
        views[at] = dataclasses.replace(
            views[at], loaded_on=Device.GPU, gpu_index=decision.gpu_index
        )
        index = next(i for i, g in enumerate(gpus) if g.index == decision.gpu_index)
        gpu = gpus[index]
        gpus[index] = dataclasses.replace(gpu, free_bytes=gpu.free_bytes - views[at].vram_bytes)


@pytest.mark.parametrize("order", list(itertools.permutations(["llm", "tts", "vlm"])))
def test_loads_one_by_one_end_where_the_plan_says(order: tuple[str, ...]) -> None:
    views, gpus = seed_views(), host("2x-t4-16gb")
    load_in_turn(views, gpus, [f"sizing-{name}" for name in order])
    where = {v.name: v.gpu_index for v in views if v.loaded_on is Device.GPU}
    assert where["sizing-llm"] == where["sizing-tts"] != where["sizing-vlm"]
    decision = decide("sizing-asr", views, gpus, RESERVE)
    assert decision.action is Action.CPU  # it prefers the CPU, as the seed places it


def test_a_load_that_does_not_fit_where_the_plan_says_goes_where_it_fits() -> None:
    gpus = [GpuView(0, gb(16), gb(16)), GpuView(1, gb(16), gb(3), stranger_bytes=gb(13))]
    views = seed_views()
    decision = decide("sizing-vlm", views, gpus, RESERVE)
    assert (decision.action, decision.gpu_index) == (Action.GPU, 0)


# -- the GPU set names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "names", "canonical"),
    [
        ("t4-16gb", ["t4-16gb"], "t4-16gb"),
        ("2x-t4-16gb", ["t4-16gb", "t4-16gb"], "2x-t4-16gb"),
        ("t4-16gb+t4-16gb", ["t4-16gb", "t4-16gb"], "2x-t4-16gb"),
        ("T4-16GB+gtx1660-6gb", ["t4-16gb", "gtx1660-6gb"], "t4-16gb+gtx1660-6gb"),
        ("2x-a100-80gb+l4-24gb", ["a100-80gb", "a100-80gb", "l4-24gb"], "2x-a100-80gb+l4-24gb"),
    ],
)
def test_gpu_sets_are_read_in_index_order(text: str, names: list[str], canonical: str) -> None:
    gpu_set = parse_gpu_set(text)
    assert [t.name for t in gpu_set.types] == names
    assert gpu_set.name == canonical
    assert gpu_set.usd_per_hour == round(sum(GPU_TYPES[n].usd_per_hour for n in names), 2)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v100-16gb", "unknown GPU type 'v100-16gb'"),
        ("2x-v100", "known types: a100-40gb, a100-80gb"),
        ("t4-16gb+", "unknown GPU type ''"),
        ("0x-t4-16gb", "a GPU count is 1 or more"),
        ("9x-t4-16gb", "one host has at most 8"),
    ],
)
def test_bad_gpu_sets_say_what_is_known(text: str, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        parse_gpu_set(text)


# -- properties: the packing over several GPUs against brute force ---------------------------

STEP = 512 * MIB


@st.composite
def hosts(draw: st.DrawFn) -> tuple[list[EngineView], list[GpuView], int]:
    """Two or three GPUs (some with strangers, held engines on them) and up to six engines."""
    gpus = [
        GpuView(i, total := draw(st.integers(4, 24)) * GIB, total, draw(st.integers(0, 4)) * STEP)
        for i in range(draw(st.integers(2, 3)))
    ]
    views = []
    for i in range(draw(st.integers(1, 6))):
        size = draw(st.integers(0, 24)) * STEP
        index = draw(st.integers(0, len(gpus) - 1))
        loaded = draw(st.booleans()) and draw(st.booleans())
        views.append(
            EngineView(
                name=f"e{i}",
                priority=draw(st.integers(0, 100)),
                vram_bytes=size,
                runs_on=draw(st.sampled_from(list(RunsOn))),
                prefers=draw(st.sampled_from(list(Device))),
                loaded_on=Device.GPU if loaded else None,
                gpu_index=index,
                leased=loaded and draw(st.booleans()),
                gpu_pin=draw(st.one_of(st.none(), st.integers(0, len(gpus)))),
            )
        )
    return views, gpus, draw(st.integers(0, 4)) * STEP


def brute_force(
    views: Sequence[EngineView], gpus: Sequence[GpuView], reserve: int
) -> tuple[int, int, int]:
    """The best (value, -spread, -bytes) over every assignment of the candidates."""
    indices = [g.index for g in gpus]
    forced = {i: [v for v in views if v.held and v.on_gpu(i)] for i in indices}
    movable = [v for v in views if not (v.held and v.loaded_on is not None)]
    free = [v for v in movable if v.wants_gpu and (v.gpu_pin is None or v.gpu_pin in indices)]
    budget = {g.index: g.total_bytes - g.stranger_bytes - reserve for g in gpus}
    best = None
    for choice in itertools.product([None, *indices], repeat=len(free)):
        if any(at is not None and not v.allowed_on(at) for v, at in zip(free, choice, strict=True)):
            continue
        placed = {i: [v for v, at in zip(free, choice, strict=True) if at == i] for i in indices}
        cap = {i: budget[i] - sum(v.vram_bytes for v in forced[i]) for i in indices}
        if any(placed[i] and sum(v.vram_bytes for v in placed[i]) > cap[i] for i in indices):
            continue
        value = {i: sum(v.value for v in [*forced[i], *placed[i]]) for i in indices}
        moved = sum(v.vram_bytes for i in indices for v in placed[i])
        key = (sum(value.values()), -sum(v * v for v in value.values()), -moved)
        best = key if best is None or key > best else best
    assert best is not None
    return best


PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(hosts())
def test_the_packing_is_the_brute_force_optimum(
    world: tuple[list[EngineView], list[GpuView], int],
) -> None:
    views, gpus, reserve = world
    plan = pack(views, gpus, reserve)
    by_name = {v.name: v for v in views}
    for device in plan.devices:
        held = [v for v in views if v.held and v.on_gpu(device.index)]
        assert {v.name for v in held} <= set(device.engines), "moved a held engine"
        placed = [by_name[n] for n in device.engines if n not in {v.name for v in held}]
        assert all(v.allowed_on(device.index) for v in placed), "broke a pin"
        cap = device.budget_bytes - sum(v.vram_bytes for v in held)
        assert sum(v.vram_bytes for v in placed) <= max(cap, 0) or not placed
    spread = sum(d.value * d.value for d in plan.devices)
    moved = sum(
        by_name[n].vram_bytes
        for d in plan.devices
        for n in d.engines
        if not (by_name[n].held and by_name[n].on_gpu(d.index))
    )
    assert (plan.value, -spread, -moved) == brute_force(views, gpus, reserve)
    assert set(plan.gpu) | set(plan.cpu) | set(plan.off) == set(by_name)


@PROPERTY
@given(hosts())
def test_modes_on_several_gpus_are_maximal_and_lead_with_the_best(
    world: tuple[list[EngineView], list[GpuView], int],
) -> None:
    views, gpus, reserve = world
    modes = feasible_modes(views, gpus, reserve)
    assert modes and modes[0].value == pack(views, gpus, reserve).value
    assert [m.value for m in modes] == sorted((m.value for m in modes), reverse=True)
    indices = {g.index for g in gpus}
    candidates = [
        v
        for v in views
        if v.wants_gpu
        and not (v.held and v.loaded_on is not None)
        and (v.gpu_pin is None or v.gpu_pin in indices)
    ]
    if len(modes) == 1:
        return
    for mode in modes:
        for outsider in (v for v in candidates if v.name not in mode.gpu):
            # a mode is maximal: with any engine more, not all of them fit at once
            with_it = [v for v in views if v.name in mode.gpu or v.name == outsider.name]
            only = [dataclasses.replace(v, runs_on=RunsOn.GPU) for v in with_it]
            assert set(pack(only, gpus, reserve).gpu) != {v.name for v in only}
