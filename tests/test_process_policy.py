"""The pure parts of supervision: restart/backoff decisions and the bounded log ring."""

from __future__ import annotations

import asyncio
import logging

import pytest

from services.process.process_log import LineSplitter, LogRing, RateLimitedLog
from services.process.restart_policy import CrashHistory, RestartPolicy
from tests.fakes import FakeClock


def test_backoff_grows_to_its_cap_then_the_crash_loop_gives_up() -> None:
    clock = FakeClock()
    policy = RestartPolicy(initial_delay_s=1, factor=2, max_delay_s=5, max_restarts=4, window_s=60)
    history = CrashHistory(policy, clock)
    delays = []
    for _ in range(4):
        verdict = history.crashed()
        assert verdict.restart
        delays.append(verdict.delay_s)
        clock.advance(1)
    assert delays == [1, 2, 4, 5]
    final = history.crashed()
    assert not final.restart and "crash loop: 5 crashes within 60 s" in final.reason


def test_crashes_outside_the_window_are_forgotten() -> None:
    clock = FakeClock()
    history = CrashHistory(RestartPolicy(max_restarts=1, window_s=10), clock)
    assert history.crashed().restart
    clock.advance(11)
    verdict = history.crashed()
    assert verdict.restart and verdict.crashes_in_window == 1


def test_a_stable_run_starts_the_backoff_over() -> None:
    clock = FakeClock()
    policy = RestartPolicy(initial_delay_s=1, max_delay_s=60, max_restarts=10, stable_after_s=30)
    history = CrashHistory(policy, clock)
    assert [history.crashed().delay_s for _ in range(3)] == [1, 2, 4]
    history.ready()
    clock.advance(29)
    assert history.crashed().delay_s == 8  # not stable long enough
    history.ready()
    clock.advance(30)
    assert history.crashed().delay_s == 1


def test_restart_disabled_and_reset() -> None:
    history = CrashHistory(RestartPolicy(restart=False), FakeClock())
    assert not history.crashed().restart
    history = CrashHistory(RestartPolicy(max_restarts=0), FakeClock())
    assert not history.crashed().restart
    history.reset()
    assert history.crashed().crashes_in_window == 1


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RestartPolicy(initial_delay_s=5, max_delay_s=1)
    with pytest.raises(ValueError):
        RestartPolicy(factor=0.5)


def test_ring_keeps_the_last_lines_cut_to_size() -> None:
    ring = LogRing(3, max_line_chars=5)
    for n in range(10):
        ring.append("stdout", f"line-{n}")
    assert ring.texts() == ["line- …", "line- …", "line- …"]
    assert [line.seq for line in ring.tail()] == [8, 9, 10]
    assert ring.tail(1)[0].seq == 10 and ring.tail(0) == []
    assert ring.total == 10


def test_splitter_bounds_lines_without_newlines() -> None:
    splitter = LineSplitter(max_line_bytes=4)
    assert splitter.feed(b"ab\r\ncd") == ["ab"]
    assert splitter.feed(b"efghijk") == ["cdef", "ghij"]
    assert splitter.feed(b"\xff\n") == ["k\ufffd"]
    assert splitter.feed(b"tail") == [] and splitter.flush() == ["tail"]


async def test_follow_gives_backlog_then_live_lines_and_reports_drops() -> None:
    ring = LogRing(100, follower_capacity=3)
    ring.append("stdout", "old-1")
    ring.append("stdout", "old-2")
    follower = ring.follow(backlog=1)
    assert (await anext(follower)).text == "old-2"
    pending = asyncio.ensure_future(anext(follower))
    await asyncio.sleep(0)  # let the follower park on its wake-up event
    assert not pending.done()
    ring.append("stderr", "new")
    line = await asyncio.wait_for(pending, 5)
    assert (line.stream, line.text) == ("stderr", "new")
    for n in range(5):  # more than the follower holds: the oldest two are dropped
        ring.append("stdout", f"burst-{n}")
    texts = [(await anext(follower)).text for _ in range(4)]
    assert texts == ["(2 lines skipped)", "burst-2", "burst-3", "burst-4"]
    await follower.aclose()
    ring.append("stdout", "after close")  # no follower left to feed


def test_log_rate_limit_counts_what_it_drops(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    logger = logging.getLogger("test.ratelimit")
    limited = RateLimitedLog(logger, "peer", per_second=2, clock=clock)
    with caplog.at_level(logging.INFO, logger="test.ratelimit"):
        for n in range(5):
            limited(logging.INFO, f"flood {n}")
        clock.advance(1)
        limited(logging.INFO, "later")
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "peer: flood 0",
        "peer: flood 1",
        "peer: (3 lines not logged)",
        "peer: later",
    ]
