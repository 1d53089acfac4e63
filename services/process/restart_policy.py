"""When a crashed child process is started again, and when the supervisor gives up on it.

Pure logic with an injectable clock, so the backoff ladder and the crash-loop limit are tested
without real processes or real time. A process that stayed ready for ``stable_after_s`` starts
its backoff over; more than ``max_restarts`` crashes within ``window_s`` is a crash loop, after
which the supervisor leaves the process ``failed`` until someone starts it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RestartPolicy:
    restart: bool = True
    initial_delay_s: float = 0.5
    factor: float = 2.0
    max_delay_s: float = 30.0
    max_restarts: int = 5
    window_s: float = 300.0
    stable_after_s: float = 60.0

    def __post_init__(self) -> None:
        if self.initial_delay_s < 0 or self.max_delay_s < self.initial_delay_s:
            raise ValueError("need 0 <= initial_delay_s <= max_delay_s")
        if self.factor < 1 or self.max_restarts < 0 or self.window_s <= 0:
            raise ValueError("need factor >= 1, max_restarts >= 0 and window_s > 0")


@dataclass(frozen=True)
class Verdict:
    """What to do after one crash: restart after ``delay_s``, or give up (``restart`` false)."""

    restart: bool
    delay_s: float
    crashes_in_window: int
    reason: str


@dataclass
class CrashHistory:
    policy: RestartPolicy
    clock: Callable[[], float] = time.monotonic
    _crashes: list[float] = field(default_factory=list)
    _streak: int = 0
    _ready_since: float | None = None

    def ready(self) -> None:
        """The process answered its readiness probe."""
        self._ready_since = self.clock()

    def reset(self) -> None:
        """An operator (or a load) started the process afresh: forget earlier crashes."""
        self._crashes.clear()
        self._streak = 0
        self._ready_since = None

    def crashed(self) -> Verdict:
        now = self.clock()
        policy = self.policy
        if self._ready_since is not None and now - self._ready_since >= policy.stable_after_s:
            self._streak = 0
        self._ready_since = None
        self._crashes = [t for t in self._crashes if now - t < policy.window_s]
        self._crashes.append(now)
        self._streak += 1
        count = len(self._crashes)
        if not policy.restart:
            return Verdict(False, 0.0, count, "restarts are disabled")
        if count > policy.max_restarts:
            return Verdict(
                False,
                0.0,
                count,
                f"crash loop: {count} crashes within {policy.window_s:g} s",
            )
        delay = min(
            policy.max_delay_s, policy.initial_delay_s * policy.factor ** (self._streak - 1)
        )
        return Verdict(True, delay, count, f"restart {count} of {policy.max_restarts}")
