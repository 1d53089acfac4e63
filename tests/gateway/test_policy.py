"""The stop policy, pure: the host is never drained or stopped while a request or session is
open, whatever the sequence of opens, closes and elapsed time, and an idle host is not kept
up for nothing (hypothesis drives it the way ``Decision`` feeds back into the controller)."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from orchestrator.gateway.lifecycle import HostState
from orchestrator.gateway.policy import Decision, Usage, decide

STOP_AFTER, DRAIN = 600.0, 30.0

steps = st.lists(
    st.one_of(
        st.tuples(st.just("open"), st.just(0.0)),
        st.tuples(st.just("close"), st.just(0.0)),
        st.tuples(st.just("wait"), st.floats(min_value=0.0, max_value=5 * STOP_AFTER)),
    ),
    max_size=60,
)


@given(steps)
@example([("open", 0.0), ("wait", 424.6429556712434), ("close", 0.0)])  # float edge
def test_never_drains_or_stops_while_anything_is_open(script: list[tuple[str, float]]) -> None:
    state, now, open_uses, last_used = HostState.READY, 0.0, 0, 0.0
    draining_since: float | None = None
    stopped = False
    for action, seconds in script:
        if action == "open":
            open_uses, last_used = open_uses + 1, now
        elif action == "close" and open_uses:
            open_uses, last_used = open_uses - 1, now
        else:
            now += seconds
        decision = decide(
            state,
            Usage(open_uses, last_used),
            now,
            draining_since=draining_since,
            stop_after_s=STOP_AFTER,
            drain_s=DRAIN,
        )
        if open_uses:
            assert decision in (Decision.KEEP, Decision.UNDRAIN)
        if decision is Decision.DRAIN:
            state, draining_since = HostState.DRAINING, now
        elif decision is Decision.UNDRAIN:
            state, draining_since = HostState.READY, None
        elif decision is Decision.STOP:
            assert open_uses == 0 and now - last_used >= STOP_AFTER + DRAIN
            stopped = True
            break
    if not stopped and open_uses == 0 and state is HostState.READY:
        # and it is not kept up for nothing: idle long enough, it drains
        later = max(now, last_used + STOP_AFTER + 1.0)  # + 1 s: clear of float rounding
        usage = Usage(0, last_used)
        kw = {"stop_after_s": STOP_AFTER, "drain_s": DRAIN}
        assert decide(state, usage, later, draining_since=None, **kw) is Decision.DRAIN


def test_idle_long_enough_drains_then_stops() -> None:
    usage = Usage(open_uses=0, last_used_at=0.0)
    kw = {"stop_after_s": STOP_AFTER, "drain_s": DRAIN}
    assert decide(HostState.READY, usage, STOP_AFTER - 1, draining_since=None, **kw) is (
        Decision.KEEP
    )
    assert decide(HostState.READY, usage, STOP_AFTER, draining_since=None, **kw) is Decision.DRAIN
    assert decide(
        HostState.DRAINING, usage, STOP_AFTER + DRAIN - 1, draining_since=STOP_AFTER, **kw
    ) is (Decision.KEEP)
    assert decide(
        HostState.DRAINING, usage, STOP_AFTER + DRAIN, draining_since=STOP_AFTER, **kw
    ) is (Decision.STOP)


def test_a_request_that_came_and_went_during_the_drain_cancels_it() -> None:
    used_during_drain = Usage(open_uses=0, last_used_at=STOP_AFTER + 5)
    decision = decide(
        HostState.DRAINING,
        used_during_drain,
        STOP_AFTER + DRAIN + 1,
        draining_since=STOP_AFTER,
        stop_after_s=STOP_AFTER,
        drain_s=DRAIN,
    )
    assert decision is Decision.UNDRAIN


def test_a_hold_keeps_an_idle_host_up_until_it_ends_and_undrains_a_drain() -> None:
    idle = Usage(open_uses=0, last_used_at=0.0)
    kw = {"stop_after_s": STOP_AFTER, "drain_s": DRAIN}
    hold = 2 * STOP_AFTER
    late = STOP_AFTER + 1
    assert decide(HostState.READY, idle, late, draining_since=None, hold_until=hold, **kw) is (
        Decision.KEEP
    )
    assert decide(HostState.READY, idle, hold, draining_since=None, hold_until=hold, **kw) is (
        Decision.DRAIN
    )
    # a planned start fired while the host drained: it stays up
    assert decide(
        HostState.DRAINING, idle, late, draining_since=STOP_AFTER, hold_until=hold, **kw
    ) is (Decision.UNDRAIN)
