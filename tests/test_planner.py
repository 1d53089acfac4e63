"""The VRAM planner: the seeds' cases, admission, eviction and refusal, and its invariants."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.gpu.catalog import load_catalog
from orchestrator.gpu.gpu_types import GPU_TYPES
from orchestrator.gpu.placement import GIB, MIB, Device, EngineView, GpuView, RunsOn
from orchestrator.gpu.planner import MAX_ENGINES, Action, PlanError, decide, feasible_modes, pack
from orchestrator.gpu.telemetry import SimulatedGpu, gpu_views, wait_for_vram_recovery

RESERVE = 1 * GIB


def gb(value: float) -> int:
    return int(value * GIB)


def engine(name: str, priority: int, size_gb: float, **state: object) -> EngineView:
    return EngineView(name, priority, gb(size_gb), **state)  # type: ignore[arg-type]


def from_catalog(*refs: str) -> list[EngineView]:
    catalog = load_catalog()
    views = []
    for ref in refs:
        match = catalog.entry(ref)
        entry = match.entry
        views.append(
            EngineView(match.key, entry.priority, match.vram_bytes, entry.runs_on, entry.prefers)
        )
    return views


def named_gpu(name: str) -> GpuView:
    size = GPU_TYPES[name].memory_bytes
    return GpuView(0, size, size)


CASCADE = ("whisper-small", "mistral-7b", "vibevoice-0.5b")


# -- the seeds' cases -------------------------------------------------------------------------


def test_sizing_seed_t4_set_packs_14_5_of_16_gb() -> None:
    views = from_catalog(
        "sizing-asr", "sizing-tts", "sizing-translation", "sizing-llm", "sizing-vlm"
    )
    plan = pack(views, [named_gpu("t4-16gb")], RESERVE)
    assert set(plan.gpu) == {"sizing-llm", "sizing-tts", "sizing-vlm"}
    assert set(plan.cpu) == {"sizing-asr", "sizing-translation"}
    assert plan.used_bytes == gb(14.5)
    assert gb(16) - plan.used_bytes == gb(1.5)


def test_cascade_fits_a_t4() -> None:
    views = from_catalog(*CASCADE)
    used = sum(v.vram_bytes for v in views)
    assert 8e9 <= used <= 10e9  # "~8-9 GB"
    plan = pack(views, [named_gpu("t4-16gb")], RESERVE)
    assert set(plan.gpu) == set(CASCADE)
    assert feasible_modes(views, [named_gpu("t4-16gb")], RESERVE) == [plan]


def test_personaplex_and_cascade_fit_an_a100_40gb() -> None:
    views = from_catalog("personaplex-7b", *CASCADE)
    plan = pack(views, [named_gpu("a100-40gb")], RESERVE)
    assert set(plan.gpu) == {"personaplex-7b", *CASCADE}


@pytest.mark.parametrize("gpu", ["l4-24gb", "a10g-24gb", "rtx3090-24gb"])
def test_a_24gb_card_gets_modes_instead(gpu: str) -> None:
    views = from_catalog("personaplex-7b", *CASCADE)
    plan = pack(views, [named_gpu(gpu)], RESERVE)
    assert set(plan.gpu) != {"personaplex-7b", *CASCADE}
    modes = feasible_modes(views, [named_gpu(gpu)], RESERVE)
    sets = [set(mode.gpu) for mode in modes]
    assert set(CASCADE) in sets  # the full cascade
    assert any({"personaplex-7b", "whisper-small"} <= s for s in sets)  # duplex + ASR
    assert all(mode.used_bytes <= mode.budget_bytes for mode in modes)
    assert modes[0].value == plan.value


# -- decisions on a simulated GPU -------------------------------------------------------------


def simulated_world(*, tts_leased: bool) -> tuple[SimulatedGpu, list[EngineView], list[GpuView]]:
    """A T4 with a stranger (2 GiB), an idle TTS (4.5 GiB) and a leased LLM (6 GiB)."""
    sim = SimulatedGpu(gb(16))
    sim.set_process(2000, gb(2))
    sim.set_process(101, gb(4.5))
    sim.set_process(102, gb(6))
    owners = {101: "tts", 102: "llm"}
    on_gpu = {"loaded_on": Device.GPU}
    views = [
        engine("tts", 50, 4.5, leased=tts_leased, **on_gpu),
        engine("llm", 60, 6, leased=True, **on_gpu),
        engine("vlm", 70, 4.5, runs_on=RunsOn.GPU),
    ]
    return sim, views, gpu_views(sim.read(), owners)


async def test_an_idle_engine_is_evicted_to_admit_a_higher_priority_one() -> None:
    sim, views, gpus = simulated_world(tts_leased=False)
    assert gpus[0].stranger_bytes == gb(2)
    decision = decide("vlm", views, gpus, RESERVE)
    assert decision.action is Action.GPU
    assert decision.evict == ("tts",)
    assert decision.required_free_bytes == gb(4.5) + RESERVE
    assert "needs 4.50 GiB on GPU 0, 2.50 GiB available: evicting tts" in decision.message
    # the effects: unload tts; the driver shows its memory free two polls later
    sim.release(101, after_polls=2)
    naps: list[float] = []

    async def nap(seconds: float) -> None:
        naps.append(seconds)

    assert decision.required_free_bytes is not None
    free = await wait_for_vram_recovery(
        sim, decision.required_free_bytes, timeout_s=5, poll_s=0.5, sleep=nap
    )
    assert free == gb(8)
    assert naps == [0.5, 0.5]


def test_refusal_when_only_leased_engines_could_make_room() -> None:
    _sim, views, gpus = simulated_world(tts_leased=True)
    decision = decide("vlm", views, gpus, RESERVE)
    assert decision.action is Action.REFUSE
    assert decision.evict == ()
    message = decision.message
    for fragment in (
        "needs 4.50 GiB",
        "16.00 GiB total",
        "3.50 GiB free",
        "1.00 GiB reserve",
        "2.00 GiB used by other processes",
        "2.50 GiB available",
        "tts 4.50 GiB (leased)",
        "llm 6.00 GiB (leased)",
        "frees 0.00 GiB",
    ):
        assert fragment in message


@pytest.mark.parametrize(
    ("big_priority", "evicted"),
    [(10, ("big-low",)), (20, ("small-a", "small-b"))],
)
def test_eviction_gives_up_the_least_value(big_priority: int, evicted: tuple[str, ...]) -> None:
    gpu = GpuView(0, gb(16), gb(3))
    on = {"loaded_on": Device.GPU}
    views = [
        engine("big-low", big_priority, 5, **on),
        engine("small-a", 5, 1, **on),
        engine("small-b", 6, 2, **on),
        engine("equal", 80, 4, **on),
        engine("new", 80, 5),
    ]
    # 2 GiB of room (3 free less the reserve) for 5: short by 3. big-low alone (value
    # priority+1) or both small ones (values 6 + 7 = 13) make room; the cheaper set goes.
    decision = decide("new", views, [gpu], RESERVE)
    assert decision.action is Action.GPU
    assert decision.evict == evicted


def test_pinned_loading_and_equal_priority_engines_stay() -> None:
    gpu = GpuView(0, gb(16), gb(1))
    on = {"loaded_on": Device.GPU}
    views = [
        engine("pinned", 10, 6, pinned=True, **on),
        engine("loading", 10, 4, loading=True, **on),
        engine("peer", 50, 5, **on),
        engine("new", 50, 4, runs_on=RunsOn.GPU),
    ]
    decision = decide("new", views, [gpu], RESERVE)
    assert decision.action is Action.REFUSE
    assert "pinned 6.00 GiB (pinned)" in decision.message
    assert "loading 4.00 GiB (loading)" in decision.message
    assert "not lower priority than 50: peer 5.00 GiB" in decision.message


def test_gpu_or_cpu_engine_goes_on_the_cpu_when_the_gpu_is_full() -> None:
    gpu = GpuView(0, gb(16), gb(1))
    views = [engine("held", 10, 14, leased=True, loaded_on=Device.GPU), engine("asr", 80, 1)]
    decision = decide("asr", views, [gpu], RESERVE)
    assert decision.action is Action.CPU
    assert "goes on the CPU" in decision.message


def test_a_load_in_flight_counts_before_free_memory_shows_it() -> None:
    gpu = GpuView(0, gb(16), gb(16))  # the first load has not touched free memory yet
    views = [
        engine("first", 50, 10, loading=True, loaded_on=Device.GPU),
        engine("second", 50, 10, runs_on=RunsOn.GPU),
    ]
    assert decide("second", views, [gpu], RESERVE).action is Action.REFUSE
    small = [views[0], engine("small", 50, 4)]
    decision = decide("small", small, [gpu], RESERVE)
    assert decision.action is Action.GPU
    assert decision.required_free_bytes == gb(4) + RESERVE + gb(10)


def test_simple_answers() -> None:
    gpu = GpuView(0, gb(16), gb(16))
    views = [
        engine("loaded", 50, 1, loaded_on=Device.CPU),
        engine("cpu-pref", 50, 1, prefers=Device.CPU),
        engine("gpu-only", 50, 20, runs_on=RunsOn.GPU),
        engine("fits", 50, 2),
    ]
    assert decide("loaded", views, [gpu], RESERVE).action is Action.NOOP
    assert decide("cpu-pref", views, [gpu], RESERVE).action is Action.CPU
    never = decide("gpu-only", views, [gpu], RESERVE)
    assert never.action is Action.REFUSE
    assert "can never fit there (15.00 GiB for our engines in all)" in never.message
    assert decide("fits", views, [gpu], RESERVE).action is Action.GPU
    assert decide("fits", views, [], RESERVE).action is Action.CPU
    assert "no GPU" in decide("gpu-only", views, [], RESERVE).message
    with pytest.raises(PlanError, match="unknown engine"):
        decide("nope", views, [gpu], RESERVE)
    too_many = [engine(f"e{i}", 1, 0.1) for i in range(MAX_ENGINES + 1)]
    with pytest.raises(PlanError, match="at most"):
        pack(too_many, [gpu], RESERVE)
    with pytest.raises(PlanError, match="unique"):
        feasible_modes([engine("twin", 1, 1), engine("twin", 2, 1)], [gpu], RESERVE)


def test_a_second_gpu_is_used_when_the_first_is_full() -> None:
    full, empty = GpuView(0, gb(16), gb(1)), GpuView(1, gb(16), gb(16))
    decision = decide("x", [engine("x", 50, 4, runs_on=RunsOn.GPU)], [full, empty], RESERVE)
    assert (decision.action, decision.gpu_index) == (Action.GPU, 1)


# -- properties -------------------------------------------------------------------------------

# Sizes in steps of 256 MiB, so that exact fits (the edge cases) come up often.
STEP = 256 * MIB
SIZES = st.integers(min_value=0, max_value=96).map(lambda steps: steps * STEP)


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[EngineView], GpuView, int]:
    """A GPU, a reserve, and engines in a state the planner could have produced."""
    total = draw(st.integers(4, 48)) * GIB
    strangers = draw(st.integers(0, 16)) * STEP
    reserve = draw(st.integers(0, 8)) * STEP
    room = total - strangers - reserve
    views: list[EngineView] = []
    for i in range(draw(st.integers(1, 9))):
        size = draw(SIZES)
        runs_on = draw(st.sampled_from(list(RunsOn)))
        loaded = runs_on is not RunsOn.CPU and draw(st.booleans()) and size <= room
        room -= size if loaded else 0
        views.append(
            EngineView(
                name=f"e{i}",
                priority=draw(st.integers(0, 100)),
                vram_bytes=size,
                runs_on=runs_on,
                prefers=draw(st.sampled_from(list(Device))),
                loaded_on=Device.GPU if loaded else None,
                loading=loaded and draw(st.booleans()),
                leased=draw(st.booleans()),
                pinned=draw(st.booleans()),
            )
        )
    used = sum(v.vram_bytes for v in views if v.loaded_on is Device.GPU and not v.loading)
    free = total - strangers - used - draw(st.integers(0, 2)) * STEP  # driver overhead
    return views, GpuView(0, total, max(free, 0), strangers), reserve


def brute_force_value(views: Sequence[EngineView], gpu: GpuView, reserve: int) -> int:
    budget = gpu.total_bytes - gpu.stranger_bytes - reserve
    forced = [v for v in views if v.held and v.loaded_on is Device.GPU]
    free = [v for v in views if v.wants_gpu and not (v.held and v.loaded_on is not None)]
    best = -1
    for count in range(len(free) + 1):
        for subset in itertools.combinations(free, count):
            chosen = [*forced, *subset]
            if sum(v.vram_bytes for v in chosen) <= budget or not subset:
                best = max(best, sum(v.value for v in chosen))
    return best


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(worlds(), st.data())
def test_no_admitted_placement_exceeds_total_minus_reserve(
    world: tuple[list[EngineView], GpuView, int], data: st.DataObject
) -> None:
    views, gpu, reserve = world
    name = data.draw(st.sampled_from([v.name for v in views]))
    decision = decide(name, views, [gpu], reserve)
    evicted = [v for v in views if v.name in decision.evict]
    assert all(not v.held for v in evicted), "evicted a leased, pinned or loading engine"
    requested = next(v for v in views if v.name == name)
    assert all(v.priority < requested.priority for v in evicted)
    if decision.action is Action.GPU:
        kept = [v for v in views if v.loaded_on is Device.GPU and v.name not in decision.evict]
        after = sum(v.vram_bytes for v in kept) + requested.vram_bytes
        assert after <= gpu.total_bytes - gpu.stranger_bytes - reserve
        # the free memory seen, plus what the evictions give back, covers the wait's target
        assert decision.required_free_bytes is not None
        freed = sum(v.vram_bytes for v in evicted)
        assert gpu.free_bytes + freed >= decision.required_free_bytes
    elif decision.evict:
        pytest.fail("evicted without admitting")


@PROPERTY
@given(worlds())
def test_packing_matches_brute_force_and_stays_in_budget(
    world: tuple[list[EngineView], GpuView, int],
) -> None:
    views, gpu, reserve = world
    plan = pack(views, [gpu], reserve)
    forced = [v for v in views if v.held and v.loaded_on is Device.GPU]
    assert {v.name for v in forced} <= set(plan.gpu), "moved a held engine off the GPU"
    if sum(v.vram_bytes for v in forced) <= plan.budget_bytes:
        assert plan.used_bytes <= plan.budget_bytes
    assert plan.value == brute_force_value(views, gpu, reserve)
    placed = set(plan.gpu) | set(plan.cpu) | set(plan.off)
    assert placed == {v.name for v in views}


@PROPERTY
@given(worlds())
def test_modes_are_maximal_fit_and_lead_with_the_best(
    world: tuple[list[EngineView], GpuView, int],
) -> None:
    views, gpu, reserve = world
    modes = feasible_modes(views, [gpu], reserve)
    assert modes
    assert modes[0].value == pack(views, [gpu], reserve).value
    by_name = {v.name: v for v in views}
    for mode in modes:
        if mode.used_bytes > mode.budget_bytes:
            continue  # only when held engines alone overfill the GPU
        movable = [v for v in views if v.wants_gpu and not (v.held and v.loaded_on)]
        outside = [v for v in movable if v.name not in mode.gpu]
        assert all(mode.used_bytes + v.vram_bytes > mode.budget_bytes for v in outside)
        assert mode.used_bytes == sum(by_name[n].vram_bytes for n in mode.gpu)
    assert [m.value for m in modes] == sorted((m.value for m in modes), reverse=True)
