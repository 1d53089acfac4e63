"""The overview's chart history: quantiles from histogram buckets, a point only when something is
new, bounded memory, and the console task reading what the runtime already holds."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest

from console.history import History, Point, histogram_buckets, quantile
from console.history_store import HistoryStore
from console.recorder import restore, step
from orchestrator.app.runtime import Runtime
from services.nvml import GpuTelemetry
from tests.fakes import FakeClock

GIB = 1024**3


def gpu(used_gib: float, util: float | None = 50.0) -> GpuTelemetry:
    used = int(used_gib * GIB)
    return GpuTelemetry(0, "NVIDIA L4", 24 * GIB, used, 24 * GIB - used, util)


def test_quantiles_interpolate_inside_a_bucket() -> None:
    buckets = [(0.1, 0.0), (0.5, 10.0), (1.0, 20.0), (math.inf, 20.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.5)
    assert quantile(0.25, buckets) == pytest.approx(0.3)  # halfway through (0.1, 0.5]
    assert quantile(0.99, buckets) == pytest.approx(0.99)  # 19.8 of 20: 98 % into (0.5, 1]
    assert quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]) is None  # nothing observed
    assert quantile(0.99, [(0.1, 1.0), (math.inf, 5.0)]) == 0.1  # past the last bound


def test_a_point_only_when_something_is_new() -> None:
    history = History(step_s=60, keep_s=600)
    no_turns = [(0.5, 0.0), (math.inf, 0.0)]
    assert history.step(0, 0, [], no_turns) is None  # no GPU, no turns
    first = history.step(60, 1, [gpu(6)], no_turns)
    assert first is not None and first.vram_used_bytes == 6 * GIB and first.p50_s is None
    assert history.step(120, 1, [gpu(6)], no_turns) is None  # the same reading again
    turns = [(0.5, 3.0), (math.inf, 4.0)]
    second = history.step(180, 1, [gpu(6)], turns)
    assert second is not None and second.turns == 4 and second.vram_used_bytes is None
    assert second.p50_s is not None and second.p50_s <= 0.5
    later = [(0.5, 3.0), (math.inf, 6.0)]  # two slow turns since the last step
    third = history.step(240, 2, [gpu(7, None)], later)
    assert third is not None and third.turns == 2 and third.p50_s == 0.5
    assert third.utilization_pct is None  # a GPU without the reading: unknown, not zero
    assert [p.at for p in history.points] == [60, 180, 240]


def test_the_history_is_bounded_and_tells_listeners() -> None:
    history = History(step_s=60, keep_s=300)
    heard: list[float] = []
    history.listeners.append(lambda point: heard.append(point.at))
    for minute in range(12):
        history.step(minute * 60, minute + 1, [gpu(1 + minute)], [])
    assert len(history.points) == 5
    assert history.to_list()[0]["at"] == 7 * 60
    assert len(heard) == 12


def test_the_console_task_reads_the_sampler_and_the_turn_histogram(
    runtime: Runtime, clock: FakeClock
) -> None:
    history = History()
    step(runtime, history)
    assert not history.points  # nothing sampled, nobody talked
    runtime.gpu_sampler.sample_once()  # the simulated 24 GB GPU of the console config
    for seconds in (0.25, 0.4, 0.45, 2.5):
        runtime.metrics.turn_stage("first_audio_s", seconds)
    runtime.metrics.turn_stage("transcript_s", 9.0)  # another stage: not this chart
    clock.advance(60)
    step(runtime, history)
    (point,) = history.points
    assert point.at == clock()
    assert point.vram_total_bytes == 24576 * 1024**2
    assert point.turns == 4
    assert point.p50_s is not None and 0.3 < point.p50_s <= 0.5
    assert point.p99_s is not None and 2 < point.p99_s <= 3
    assert histogram_buckets(runtime.metrics.turn_seconds)[-1] == (math.inf, 4.0)


def test_the_store_keeps_the_window_and_skips_what_it_cannot_read(tmp_path: Path) -> None:
    db = tmp_path / "orchestrator.db"
    store = HistoryStore(db)
    for at in (0.0, 100.0, 200.0):
        store.save(Point(at=at, turns=1, p50_s=0.4), keep_s=120)
    assert [p.at for p in store.since(0)] == [100.0, 200.0]  # 0 fell out of the window
    with sqlite3.connect(db) as raw:
        raw.execute("INSERT INTO console_chart_points VALUES (150, 'not json')")
        raw.execute("""INSERT INTO console_chart_points VALUES (160, '{"at": 160, "new": 1}')""")
    store.close()
    again = HistoryStore(db)  # a restart reads what the last run wrote
    assert [(p.at, p.p50_s) for p in again.since(120)] == [(160.0, None), (200.0, 0.4)]
    again.close()


async def test_a_restart_puts_the_saved_hours_back(
    runtime: Runtime, clock: FakeClock, tmp_path: Path
) -> None:
    store = HistoryStore(tmp_path / "orchestrator.db")
    now = clock()
    old, recent = Point(at=now - 7 * 3600, turns=2), Point(at=now - 600, turns=3, p50_s=0.5)
    for point in (old, recent):
        store.save(point, keep_s=24 * 3600)
    history = History()
    await restore(runtime, history, store)
    assert list(history.points) == [recent]  # what is older than the six hours stays out
    store.close()
