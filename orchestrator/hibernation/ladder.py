"""The idle ladder as pure logic: feed it events with their time, it answers with transitions.

    ACTIVE -> WARM -> COOL -> COLD -> DORMANT      by idle time, thresholds from config
    any    -> ACTIVE                               on data-path activity or an operator wake

Idle time runs from the last data-path activity; while a session is open or a keep-awake is in
force it is zero. An operator may force a deeper state; it holds (the ladder may still descend
further) until the next activity. Nothing here sleeps, reads a clock or does I/O: callers pass
``now`` (seconds since the epoch, so that state survives a restart) and apply the transitions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.core.idle import ORDER, IdleState, Thresholds


@dataclass(frozen=True)
class Transition:
    at: float
    source: IdleState
    target: IdleState
    cause: str

    @property
    def deeper(self) -> bool:
        return self.target.depth > self.source.depth

    def passed(self) -> list[IdleState]:
        """States entered on the way down, in order (empty when waking)."""
        return ORDER[self.source.depth + 1 : self.target.depth + 1] if self.deeper else []


@dataclass
class Ladder:
    thresholds: Thresholds
    state: IdleState = IdleState.ACTIVE
    last_activity: float = 0.0
    keep_awake_until: float = 0.0
    floor: IdleState = IdleState.ACTIVE
    open_sessions: set[str] = field(default_factory=set)

    def idle_seconds(self, now: float) -> float:
        if self.open_sessions or now < self.keep_awake_until:
            return 0.0
        return max(0.0, now - max(self.last_activity, self.keep_awake_until))

    def target(self, now: float) -> IdleState:
        by_idle = self.thresholds.state_for(self.idle_seconds(now))
        return by_idle if by_idle.depth >= self.floor.depth else self.floor

    def next_step_at(self, now: float) -> float | None:
        """When the next idle step is due, or None when none can come (a session is open)."""
        if self.open_sessions or self.state is IdleState.DORMANT:
            return None
        following = ORDER[self.state.depth + 1]
        start = max(self.last_activity, self.keep_awake_until)
        return start + self.thresholds.begins(following)

    # -- events ------------------------------------------------------------------------------

    def activity(self, now: float, cause: str = "activity") -> Transition | None:
        self.last_activity = max(self.last_activity, now)
        self.floor = IdleState.ACTIVE
        return self._move(now, IdleState.ACTIVE, cause)

    def session_opened(self, session_id: str, now: float) -> Transition | None:
        self.open_sessions.add(session_id)
        return self.activity(now, f"session {session_id} opened")

    def session_closed(self, session_id: str, now: float) -> None:
        if session_id in self.open_sessions:
            self.open_sessions.discard(session_id)
            self.last_activity = max(self.last_activity, now)

    def keep_awake(self, until: float, now: float) -> Transition | None:
        self.keep_awake_until = until
        return self.activity(now, f"keep awake for {round(until - now)} s")

    def force(self, state: IdleState, now: float, cause: str) -> Transition | None:
        """An operator's order. Forcing ACTIVE is a wake; a deeper state holds until activity."""
        if state is IdleState.ACTIVE:
            return self.activity(now, cause)
        self.floor = state
        self.keep_awake_until = min(self.keep_awake_until, now)
        return self._move(now, state, cause)

    def tick(self, now: float) -> Transition | None:
        """Descend when idle time says so; never climbs (only activity wakes)."""
        target = self.target(now)
        if target.depth <= self.state.depth:
            return None
        return self._move(now, target, f"idle {round(self.idle_seconds(now))} s")

    def _move(self, now: float, target: IdleState, cause: str) -> Transition | None:
        if target is self.state:
            return None
        transition = Transition(at=now, source=self.state, target=target, cause=cause)
        self.state = target
        return transition
