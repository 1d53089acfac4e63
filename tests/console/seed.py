"""A few days of plausible history (host runs, ladder transitions) for pages worth looking at."""

from __future__ import annotations

import math
from typing import Any

from console.history import History
from orchestrator.app.runtime import Runtime
from orchestrator.core.store import TransitionRecord
from services.nvml import GpuTelemetry
from tests.fakes import FakeClock

DAY, HOUR, MB = 86400.0, 3600.0, 1_000_000
SESSIONS_AT = (9, 14, 19)  # hours of the day a class talks for 45 minutes


def _memory(rss_mb: int, vram_mb: int) -> dict[str, Any]:
    return {"rss_bytes": rss_mb * MB, "vram_bytes": vram_mb * MB, "engines": {}}


def _unload(target: str, ram_mb: int, vram_mb: int) -> dict[str, Any]:
    return {
        "action": "unload",
        "target": target,
        "ok": True,
        "detail": "done",
        "seconds": 0.4,
        "ram_freed_bytes": ram_mb * MB,
        "vram_freed_bytes": vram_mb * MB,
    }


def _steps(session: float) -> list[tuple[float, str, str, list[dict[str, Any]], int, int]]:
    """(at, target, cause, actions, RSS before, VRAM before) after one 45-minute session."""
    idle = session + 45 * 60
    return [
        (session, "active", "session opened", [], 900, 300),
        (idle + 30, "warm", "idle 30 s", [], 2900, 6100),
        (idle + 300, "cool", "idle 300 s", [_unload("tts", 180, 2400)], 2900, 6100),
        (idle + 1800, "cold", "idle 1800 s", [_unload("asr", 700, 1100)], 2700, 3700),
        (idle + 7200, "dormant", "idle 7200 s", [], 900, 300),
    ]


def seed_history(runtime: Runtime, clock: FakeClock, days: int = 4) -> None:
    now = clock()
    start = now - days * DAY
    runtime.ledger.host_on(start)
    beat = start
    while beat < now:
        runtime.ledger.heartbeat(beat)
        beat += HOUR
    runtime.ledger.heartbeat(now)
    midnight = start - start % DAY
    source = "dormant"
    for day in range(days + 1):
        for hour in SESSIONS_AT:
            for at, target, cause, actions, rss, vram in _steps(midnight + day * DAY + hour * HOUR):
                if not start < at < now - 120:
                    continue
                freed = sum(a["vram_freed_bytes"] for a in actions) // MB
                ram = sum(a["ram_freed_bytes"] for a in actions) // MB
                before, after = _memory(rss, vram), _memory(rss - ram, vram - freed)
                record = TransitionRecord(at, source, target, cause, actions, before, after, 0.5)
                runtime.store.add_transition(record)
                source = target
    wake = [] if source == "active" else [("active", "session opened")]
    for target, cause in wake:
        runtime.store.add_transition(
            TransitionRecord(
                now - 65, source, target, cause, [], _memory(900, 300), _memory(900, 300), 0.1
            )
        )


def seed_charts(history: History, clock: FakeClock, hours: int = 6) -> None:
    """Six hours of GPU readings and turn latencies through ``History.step``, as the console's
    task would have recorded them: classes at fixed times load the GPU and make turns."""
    bounds = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, math.inf)
    counts = [0.0] * len(bounds)
    total = 24 * 1024**3
    start = clock() - hours * HOUR
    for minute in range(hours * 60):
        at = start + minute * 60
        talking = (minute // 45) % 3 == 1  # 45 minutes of class, 90 minutes of quiet
        used = (8.6 if talking else 0.4) * 1024**3 + (minute % 7) * 40 * MB
        util = 45.0 + 20 * math.sin(minute / 4) if talking else 0.0
        gpu = GpuTelemetry(0, "NVIDIA L4", total, int(used), total - int(used), util)
        if talking:  # a few turns a minute: most answered in 0.3-0.75 s, some slower
            turns = ((4, 3 + minute % 3), (5, 1 + minute % 2), (7, int(minute % 5 == 0)))
            for index, extra in turns:
                for i in range(index, len(bounds)):
                    counts[i] += extra
        history.step(at, minute + 1, [gpu], list(zip(bounds, counts, strict=True)))
