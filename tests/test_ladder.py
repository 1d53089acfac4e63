"""The idle ladder's pure logic, driven with explicit times: no clock, no sleeping."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.core.idle import ORDER, IdleState, Thresholds
from orchestrator.hibernation.ladder import Ladder

T = Thresholds(warm=30, cool=300, cold=1800, dormant=7200)


def ladder(at: float = 0.0) -> Ladder:
    return Ladder(T, last_activity=at)


@pytest.mark.parametrize(
    ("idle", "state"),
    [
        (0, "active"),
        (29.9, "active"),
        (30, "warm"),
        (299, "warm"),
        (300, "cool"),
        (1800, "cold"),
        (7199, "cold"),
        (7200, "dormant"),
        (10**6, "dormant"),
    ],
)
def test_thresholds_pick_the_state(idle: float, state: str) -> None:
    assert T.state_for(idle) == IdleState(state)


def test_ticks_walk_down_one_step_at_a_time() -> None:
    lad = ladder()
    seen = []
    for now in (10, 31, 301, 1801, 7201):
        transition = lad.tick(now)
        if transition:
            seen.append((transition.source.value, transition.target.value))
    assert seen == [("active", "warm"), ("warm", "cool"), ("cool", "cold"), ("cold", "dormant")]
    assert lad.tick(10**6) is None


def test_a_late_tick_jumps_and_lists_every_state_passed() -> None:
    lad = ladder()
    transition = lad.tick(5000)
    assert transition is not None
    assert transition.target is IdleState.COLD
    assert transition.passed() == [IdleState.WARM, IdleState.COOL, IdleState.COLD]
    assert transition.cause == "idle 5000 s"


def test_activity_wakes_and_restarts_the_idle_clock() -> None:
    lad = ladder()
    lad.tick(2000)
    transition = lad.activity(2100)
    assert transition is not None
    assert (transition.source, transition.target) == (IdleState.COLD, IdleState.ACTIVE)
    assert transition.passed() == []
    assert lad.tick(2100 + 29) is None
    assert lad.tick(2100 + 30) is not None


def test_activity_while_active_is_no_transition() -> None:
    lad = ladder()
    assert lad.activity(5) is None
    assert lad.last_activity == 5


def test_an_open_session_holds_the_stack_awake() -> None:
    lad = ladder()
    lad.session_opened("s1", 10)
    assert lad.tick(10_000) is None
    assert lad.idle_seconds(10_000) == 0
    assert lad.next_step_at(10_000) is None
    lad.session_closed("s1", 10_000)
    assert lad.tick(10_029) is None
    transition = lad.tick(10_030)
    assert transition is not None and transition.target is IdleState.WARM


def test_keep_awake_delays_the_ladder() -> None:
    lad = ladder()
    lad.keep_awake(until=3600, now=0)
    assert lad.tick(3599) is None
    assert lad.idle_seconds(3600 + 40) == 40
    transition = lad.tick(3600 + 40)
    assert transition is not None and transition.target is IdleState.WARM


def test_forced_state_holds_until_activity() -> None:
    lad = ladder()
    transition = lad.force(IdleState.COLD, 5, "operator: hibernate")
    assert transition is not None and transition.passed()[-1] is IdleState.COLD
    assert lad.tick(6) is None  # stays cold, does not climb back
    assert lad.state is IdleState.COLD
    assert lad.tick(7200 + 10) is not None  # and may still go deeper
    lad.activity(8000)
    assert lad.state is IdleState.ACTIVE
    assert lad.tick(8001) is None


def test_force_active_is_a_wake() -> None:
    lad = ladder()
    lad.tick(4000)
    transition = lad.force(IdleState.ACTIVE, 4001, "operator: wake")
    assert transition is not None and transition.target is IdleState.ACTIVE
    assert lad.last_activity == 4001


def test_next_step_countdown() -> None:
    lad = ladder(at=100)
    assert lad.next_step_at(110) == 130
    lad.tick(131)
    assert lad.next_step_at(131) == 400


events = st.lists(
    st.tuples(
        st.sampled_from(["tick", "activity", "open", "close", "force"]),
        st.floats(min_value=0, max_value=500),
        st.sampled_from(["a", "b"]),
        st.sampled_from(ORDER),
    ),
    max_size=60,
)


@given(events)
def test_state_always_matches_idle_time_or_an_order(steps: list) -> None:
    lad = ladder()
    now = 0.0
    for kind, gap, session, state in steps:
        now += gap * 20
        if kind == "tick":
            lad.tick(now)
            expected = lad.thresholds.state_for(lad.idle_seconds(now))
            # after a tick the state is at least as deep as idle time says, never shallower
            assert lad.state.depth >= expected.depth
            assert lad.state.depth >= lad.floor.depth
        elif kind == "activity":
            lad.activity(now)
            assert lad.state is IdleState.ACTIVE
        elif kind == "open":
            lad.session_opened(session, now)
            assert lad.state is IdleState.ACTIVE
        elif kind == "close":
            lad.session_closed(session, now)
        else:
            lad.force(state, now, "test")
            assert lad.state is state
        if lad.open_sessions:
            assert lad.idle_seconds(now) == 0
