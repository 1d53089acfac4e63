"""The simulator against hand-computed traces, and properties over random ones."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.config import HibernationConfig, StateActions, load_config
from orchestrator.core.idle import IdleState
from orchestrator.credits.simulator import (
    DEFAULT_LOAD_S,
    DEFAULT_RESUME_S,
    Policy,
    Session,
    WakeCosts,
    active_seconds,
    percentile,
    simulate,
    standard_policies,
)
from services.adapter_roles import ADAPTER_ROLES, MORE_ROLES
from services.base import Role

H = 3600.0
T0 = 1_700_000_000.0  # a real epoch time, so float rounding is what production sees
CONFIG = HibernationConfig()  # warm 30 s, cool 5 min, cold 30 min, dormant 2 h
CASCADE = WakeCosts(
    needs=frozenset({Role.ASR, Role.TTS}),
    load_s={Role.ASR: 4.0, Role.TTS: 1.5, Role.LLM: 6.0},
    host_boot_s=90.0,
)
LADDER = Policy.ladder(CONFIG, host_power=True)


def sessions(*spans: tuple[float, float]) -> list[Session]:
    return [Session(T0 + a, T0 + b) for a, b in spans]


def test_the_configured_ladder_unloads_cumulatively_and_powers_off_in_dormant() -> None:
    assert LADDER.unloaded[IdleState.WARM] == frozenset()
    assert LADDER.unloaded[IdleState.COOL] == frozenset()
    # COOL parks what it unloaded, the VLM (asked for now and then: homework photos) and the
    # translation engine
    assert LADDER.parked[IdleState.COOL] == {Role.TTS, Role.DUPLEX, Role.VLM, Role.TRANSLATION}
    assert LADDER.unloaded[IdleState.COLD] == frozenset(Role)
    assert LADDER.parked[IdleState.COLD] == frozenset()  # unloading wins over parking
    assert LADDER.host_off == {IdleState.DORMANT}
    assert Policy.ladder(CONFIG, host_power=False).host_off == frozenset()


def test_the_shipped_ladder_covers_the_vlm_and_the_simulator_knows_its_times() -> None:
    shipped = load_config(environ={}).hibernation.actions
    assert Role.VLM not in shipped[IdleState.WARM].park_roles + shipped[IdleState.WARM].unload_roles
    assert Role.VLM in shipped[IdleState.COOL].park_roles
    assert Role.VLM in shipped[IdleState.COLD].unload_roles
    assert Role.VLM in shipped[IdleState.DORMANT].unload_roles
    costs = WakeCosts(needs=frozenset({Role.LLM, Role.VLM}), resume_s=DEFAULT_RESUME_S)
    assert costs.wake_s(Role.VLM, parked=False) == DEFAULT_LOAD_S[Role.VLM] > 0
    assert costs.wake_s(Role.VLM, parked=True) == DEFAULT_RESUME_S[Role.VLM] > 0


def test_every_served_role_has_a_load_and_a_resume_time() -> None:
    served = set(ADAPTER_ROLES.values()) | {role for _, role in MORE_ROLES}
    assert {Role.TRANSLATION, Role.VLM} <= served
    assert served <= DEFAULT_LOAD_S.keys() and served <= DEFAULT_RESUME_S.keys()
    assert DEFAULT_RESUME_S[Role.TRANSLATION] < DEFAULT_LOAD_S[Role.TRANSLATION]


def test_one_session_in_cold_pays_the_longest_of_its_parallel_loads() -> None:
    result = simulate(
        sessions((0, 600)), replace(LADDER, initial=IdleState.COLD), CASCADE, tick_s=1
    )
    assert result.waits == (4.0,)  # max(ASR 4 s, TTS 1.5 s), not their sum
    assert result.wakes[IdleState.COLD] == 1


def test_one_session_from_a_powered_off_host_pays_the_boot_then_the_loads() -> None:
    result = simulate(sessions((0, 600)), LADDER, CASCADE, tick_s=1)
    assert result.waits == (94.0,)
    assert result.wakes[IdleState.DORMANT] == 1


def test_waking_from_cool_reloads_only_what_cool_unloaded() -> None:
    trace = sessions((0, 60), (60 + 600, 700), (700 + 2700, 3500))  # idle 10 min, then 45 min
    result = simulate(trace, replace(LADDER, initial=IdleState.ACTIVE), CASCADE, tick_s=1)
    assert result.waits == (0.0, 1.5, 4.0)  # from COOL only TTS; from COLD both
    assert result.wakes[IdleState.COOL] == 1
    assert result.wakes[IdleState.COLD] == 1


def test_a_parked_role_resumes_and_one_whose_engine_cannot_park_reloads() -> None:
    trace = sessions((0, 60), (60 + 600, 700), (700 + 2700, 3500))  # from COOL, then from COLD
    active = replace(LADDER, initial=IdleState.ACTIVE)
    parks = replace(CASCADE, needs=frozenset({Role.ASR, Role.TTS, Role.LLM}))
    parks = replace(parks, resume_s={Role.TTS: 0.25})  # TTS's engine parks; ASR's and LLM's stay
    result = simulate(trace, active, parks, tick_s=1)
    assert result.waits == (0.0, 0.25, 6.0)  # COOL: TTS resumes; COLD unloaded it: all load
    cannot = replace(parks, resume_s={})  # a TTS engine that cannot park was unloaded in COOL
    assert simulate(trace, active, cannot, tick_s=1).waits == (0.0, 1.5, 6.0)


def test_a_ladder_that_parks_the_llm_too_wakes_from_cool_at_resume_speed() -> None:
    cool = CONFIG.actions[IdleState.COOL]
    config = HibernationConfig(
        actions={IdleState.COOL: replace_actions(cool, park_roles=(Role.TTS, Role.LLM))}
    )
    costs = WakeCosts(
        needs=frozenset({Role.LLM, Role.TTS}),
        load_s={Role.LLM: 20.0, Role.TTS: 3.0},
        resume_s={Role.LLM: 1.5, Role.TTS: 0.3},
    )
    trace = sessions((0, 60), (60 + 600, 700))
    policy = replace(Policy.ladder(config, host_power=False), initial=IdleState.ACTIVE)
    assert simulate(trace, policy, costs, tick_s=1).waits == (0.0, 1.5)
    unloads = replace(
        policy,
        parked={},
        unloaded={**policy.unloaded, IdleState.COOL: policy.parked[IdleState.COOL]},
    )
    assert simulate(trace, unloads, costs, tick_s=1).waits == (0.0, 20.0)


def replace_actions(actions: StateActions, **changes: object) -> StateActions:
    return actions.model_copy(update=changes)


def test_sessions_closer_than_the_warm_threshold_pay_nothing() -> None:
    trace = sessions(*((i * 100.0, i * 100.0 + 80.0) for i in range(20)))  # 20 s apart
    result = simulate(trace, replace(LADDER, initial=IdleState.ACTIVE), CASCADE, tick_s=1)
    assert set(result.waits) == {0.0}
    assert sum(result.wakes.values()) == 0
    assert result.billed_s == result.span_s


def test_a_session_that_opens_while_the_host_boots_waits_for_the_rest() -> None:
    result = simulate(sessions((0, 600), (50, 300)), LADDER, CASCADE, tick_s=1)
    assert result.waits == (94.0, 44.0)
    assert result.wakes[IdleState.DORMANT] == 1


def test_a_session_every_three_hours_saves_a_known_factor() -> None:
    """8 half-hour lessons 3 h apart: 7 gaps of 2.5 h, the last 0.5 h of each powered off."""
    trace = sessions(*((i * 3 * H, i * 3 * H + 0.5 * H) for i in range(8)))
    span = 7 * 3 * H + 0.5 * H
    ladder = simulate(trace, LADDER, CASCADE, tick_s=1)
    assert ladder.span_s == span
    assert ladder.active_s == 8 * 0.5 * H
    assert ladder.billed_s == pytest.approx(span - 7 * 0.5 * H)
    assert ladder.credit_multiplier == pytest.approx(21.5 / 18)
    assert ladder.wakes[IdleState.DORMANT] == 8
    assert set(ladder.waits) == {94.0}
    fixed = simulate(trace, Policy.fixed_timeout(15), CASCADE, tick_s=1)
    assert fixed.billed_s == pytest.approx(span - 7 * 2.25 * H)
    assert fixed.credit_multiplier == pytest.approx(21.5 / 5.75)
    stays_on = simulate(trace, Policy.ladder(CONFIG, host_power=False), CASCADE, tick_s=1)
    assert stays_on.billed_s == span
    assert set(stays_on.waits) == {4.0}  # every one from DORMANT, host on: ASR's load only
    always = simulate(trace, Policy.always_on(), CASCADE, tick_s=1)
    assert always.credit_multiplier == 1.0
    assert set(always.waits) == {0.0}


def test_states_are_timed_as_the_ladder_descends() -> None:
    trace = sessions((0, 60), (3 * H, 3 * H + 60))
    result = simulate(trace, replace(LADDER, initial=IdleState.ACTIVE), CASCADE, tick_s=1)
    by_state = result.seconds_by_state
    assert by_state[IdleState.WARM] == pytest.approx(270)
    assert by_state[IdleState.COOL] == pytest.approx(1500)
    assert by_state[IdleState.COLD] == pytest.approx(5400)
    assert by_state[IdleState.DORMANT] == pytest.approx(3 * H - 60 - 7200)
    assert by_state[IdleState.ACTIVE] == pytest.approx(60 + 30 + 60)


def test_descents_wait_for_the_tick_grid() -> None:
    """COOL is due 300 s after the close at 10 s; with a 7 s tick it begins at 315, not 310."""
    policy = replace(LADDER, initial=IdleState.ACTIVE)

    def woke_from(second_start: float, tick_s: float) -> IdleState:
        trace = [Session(0.0, 10.0), Session(second_start, second_start + 1)]
        wakes = simulate(trace, policy, CASCADE, tick_s=tick_s).wakes
        return next(state for state, count in wakes.items() if count)

    assert woke_from(312, tick_s=1) is IdleState.COOL
    assert woke_from(312, tick_s=7) is IdleState.WARM
    assert woke_from(315, tick_s=7) is IdleState.COOL  # a tick due at an event's time goes first
    assert woke_from(316, tick_s=7) is IdleState.COOL


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([], 50) == 0.0


def test_active_time_is_the_union_of_sessions() -> None:
    assert active_seconds(sessions((0, 10), (5, 20), (30, 40), (32, 35))) == 30


def test_a_needed_role_without_a_load_time_is_refused() -> None:
    with pytest.raises(ValueError, match="duplex"):
        WakeCosts(needs=frozenset({Role.DUPLEX}), load_s={Role.ASR: 1.0})


def test_an_empty_trace_bills_nothing() -> None:
    result = simulate([], LADDER, CASCADE, tick_s=1)
    assert result.billed_s == 0
    assert result.credit_multiplier is None


SMALL = HibernationConfig(warm_after_s=30, cool_after_s=120, cold_after_s=600, dormant_after_s=1800)
traces = st.lists(
    st.tuples(st.floats(0, 4 * H), st.floats(0, 1200)),
    min_size=1,
    max_size=12,
).map(lambda spans: [Session(T0 + a, T0 + a + d) for a, d in spans])


@given(traces)
@settings(max_examples=60, deadline=None)
def test_billed_hours_lie_between_active_and_always_on(trace: list[Session]) -> None:
    for policy in standard_policies(SMALL, (1, 10)):
        result = simulate(trace, policy, CASCADE, tick_s=1)
        assert result.active_s - 1e-6 <= result.billed_s <= result.span_s + 1e-6
        assert result.wait(50) <= result.wait(99) <= result.wait(100)
        assert all(0 <= w <= 94.0 for w in result.waits)


@given(traces, st.sampled_from([1.0, 2.5, 7.0, 60.0]), st.sampled_from(list(IdleState)))
@settings(max_examples=40, deadline=None)
def test_jumping_to_the_due_tick_equals_ticking_every_tick(
    trace: list[Session], tick_s: float, initial: IdleState
) -> None:
    for policy in (Policy.ladder(SMALL, host_power=True), Policy.fixed_timeout(5)):
        policy = replace(policy, initial=initial)
        jumped = simulate(trace, policy, CASCADE, tick_s=tick_s)
        ticked = simulate(trace, policy, CASCADE, tick_s=tick_s, every_tick=True)
        assert jumped == ticked


@given(st.lists(st.floats(0, 1000), min_size=1, max_size=50))
def test_percentiles_are_monotone(values: list[float]) -> None:
    qs = [percentile(values, q) for q in (0, 10, 50, 90, 99, 100)]
    assert qs == sorted(qs)
    assert qs[-1] == max(values)
