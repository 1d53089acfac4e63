"""Replay a usage trace through the idle ladder on a virtual clock: hours billed, waits paid.

The same pure ``Ladder`` the hibernator runs decides the states; ticks fall on the scheduler's
grid (multiples of ``tick_s``), but the replay jumps straight to the tick where the next step is
due, so 30 days take milliseconds and give what ticking every ``tick_s`` would (a test holds it).
A policy says which roles each state has unloaded or parked and in which states the host is off;
a session that opens pays for what its first request needs and is not loaded: the host's boot if
it is off, then the needed roles' loads in parallel (the longest one). A parked role resumes
instead (``WakeCosts.resume_s``: its engine copies the weights back from host RAM); a role whose
engine cannot park was unloaded, so it has no resume time and pays its load. Billed hours are the
hours the host is on. Only roles appear here, never engines.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.config import HibernationConfig
from orchestrator.core.idle import ORDER, IdleState, Thresholds
from orchestrator.hibernation.ladder import Ladder
from services.base import Role

DEFAULT_LOAD_S: dict[Role, float] = {
    Role.ASR: 2.0,
    Role.LLM: 6.0,
    Role.TTS: 3.0,
    Role.DUPLEX: 25.0,
    Role.VAD: 0.5,
    Role.VLM: 8.0,  # a 3-4 GB vision model (qwen2.5vl:3b via Ollama): language model + projector
    Role.TRANSLATION: 4.0,  # CTranslate2 NLLB-200 1.3B int8 from disk (~1.4 GB), on the CPU
}
# Resume from the parked state: the weights copied back from host RAM. Typical figures on a GPU
# host: faster-whisper small ~0.2-0.5 s, a vLLM 7B ~1-3 s (vLLM's sleep-mode docs and blog: wakes
# in well under a second to a few seconds where a reload takes tens of seconds).
DEFAULT_RESUME_S: dict[Role, float] = {
    Role.ASR: 0.5,
    Role.LLM: 2.0,
    Role.TTS: 0.5,
    Role.DUPLEX: 3.0,
    Role.VAD: 0.1,
    Role.VLM: 1.5,  # parked in process (transformers): the weights copied back
    Role.TRANSLATION: 0.3,  # CTranslate2's load_model() from its host-RAM copy
}
DEFAULT_BOOT_S = 90.0
DEFAULT_TIMEOUTS_MIN = (15.0, 30.0)
HOUR_S = 3600.0
LONG_WAIT_S = 10.0  # a first answer later than this after the first request is a long wait


@dataclass(frozen=True)
class Session:
    start: float
    end: float


@dataclass(frozen=True)
class WakeCosts:
    """What a wake costs: seconds to load each role, to resume a parked one (roles whose engine
    can park only; the others were unloaded instead), and to boot a powered-off host."""

    needs: frozenset[Role]
    load_s: Mapping[Role, float] = field(default_factory=lambda: dict(DEFAULT_LOAD_S))
    host_boot_s: float = DEFAULT_BOOT_S
    resume_s: Mapping[Role, float] = field(default_factory=dict)

    def wake_s(self, role: Role, parked: bool) -> float:
        """A parked role's resume, else its load (parked where its engine could not park means
        it was unloaded)."""
        if parked and role in self.resume_s:
            return self.resume_s[role]
        return self.load_s[role]

    def __post_init__(self) -> None:
        missing = sorted(role.value for role in self.needs if role not in self.load_s)
        if missing:
            raise ValueError(f"no load time for role(s): {', '.join(missing)}")


@dataclass(frozen=True)
class Policy:
    name: str
    thresholds: Thresholds
    unloaded: Mapping[IdleState, frozenset[Role]]  # roles unloaded while in each state
    host_off: frozenset[IdleState]  # states in which the host is powered off
    initial: IdleState = IdleState.DORMANT  # where the trace finds the stack
    parked: Mapping[IdleState, frozenset[Role]] = field(default_factory=dict)  # parked there

    @classmethod
    def ladder(cls, hibernation: HibernationConfig, *, host_power: bool) -> Policy:
        """The configured ladder; ``host_power`` says whether a host power action is configured."""
        unloaded: dict[IdleState, frozenset[Role]] = {}
        parked: dict[IdleState, frozenset[Role]] = {}
        host_off: set[IdleState] = set()
        for state in ORDER:
            passed = ORDER[1 : state.depth + 1]  # deeper states also did what shallower ones did
            actions = [hibernation.actions[s] for s in passed]
            unloaded[state] = frozenset(role for a in actions for role in a.unload_roles)
            parked[state] = frozenset(r for a in actions for r in a.park_roles) - unloaded[state]
            if host_power and any(a.host_power_off for a in actions):
                host_off.add(state)
        name = "ladder, host off in dormant" if host_off else "ladder, host stays on"
        thresholds = hibernation.thresholds()
        return cls(name, thresholds, unloaded, frozenset(host_off), parked=parked)

    @classmethod
    def fixed_timeout(cls, minutes: float) -> Policy:
        """The plain alternative: the machine stops after ``minutes`` idle, boots on demand."""
        after = minutes * 60.0
        unloaded = {state: frozenset[Role]() for state in ORDER}
        unloaded[IdleState.DORMANT] = frozenset(Role)
        thresholds = Thresholds(after, after, after, after)
        return cls(f"fixed timeout {minutes:g} min", thresholds, unloaded, frozenset(ORDER[1:]))

    @classmethod
    def always_on(cls) -> Policy:
        never = math.inf
        unloaded = {state: frozenset[Role]() for state in ORDER}
        thresholds = Thresholds(never, never, never, never)
        return cls("always on", thresholds, unloaded, frozenset(), initial=IdleState.ACTIVE)


def standard_policies(
    hibernation: HibernationConfig, timeouts_min: Sequence[float] = DEFAULT_TIMEOUTS_MIN
) -> list[Policy]:
    """Always-on, our ladder with and without a host power action, fixed-timeout shutdowns."""
    return [
        Policy.always_on(),
        Policy.ladder(hibernation, host_power=True),
        Policy.ladder(hibernation, host_power=False),
        *(Policy.fixed_timeout(minutes) for minutes in timeouts_min),
    ]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (a value that occurred); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100.0 * len(ordered))) - 1]


def active_seconds(sessions: Sequence[Session]) -> float:
    """Time with at least one session open (the union of the sessions)."""
    total, reach = 0.0, -math.inf
    for session in sorted(sessions, key=lambda s: s.start):
        if session.end > reach:
            total += session.end - max(session.start, reach)
            reach = session.end
    return total


@dataclass(frozen=True)
class SimResult:
    policy: str
    span_s: float
    active_s: float
    billed_s: float
    seconds_by_state: Mapping[IdleState, float]
    wakes: Mapping[IdleState, int]  # transitions to ACTIVE by the state they left
    waits: tuple[float, ...]  # per session, in trace order: what waking added to its first request

    @property
    def credit_multiplier(self) -> float | None:
        """How many times longer the credits last than always-on (None: nothing billed)."""
        return self.span_s / self.billed_s if self.billed_s > 0 else None

    def wait(self, q: float) -> float:
        return percentile(self.waits, q)

    def to_dict(self) -> dict[str, Any]:
        multiplier = self.credit_multiplier
        return {
            "policy": self.policy,
            "always_on_hours": round(self.span_s / HOUR_S, 3),
            "active_hours": round(self.active_s / HOUR_S, 3),
            "billed_hours": round(self.billed_s / HOUR_S, 3),
            "credit_multiplier": None if multiplier is None else round(multiplier, 3),
            "hours_by_state": {
                s.value: round(v / HOUR_S, 3) for s, v in self.seconds_by_state.items()
            },
            "wakes": {state.value: count for state, count in self.wakes.items()},
            "sessions": len(self.waits),
            "sessions_waiting": sum(1 for w in self.waits if w > 0),
            "long_waits": sum(1 for w in self.waits if w > LONG_WAIT_S),
            "wait_s": {"p50": self.wait(50), "p99": self.wait(99), "max": self.wait(100)},
        }


def simulate(
    sessions: Sequence[Session],
    policy: Policy,
    costs: WakeCosts,
    *,
    tick_s: float,
    every_tick: bool = False,
) -> SimResult:
    """Replay ``sessions`` over [first start, last end]. ``every_tick`` ticks at every grid point
    instead of jumping (slow; it exists to check the jump)."""
    if not sessions:
        empty = dict.fromkeys(ORDER, 0.0)
        return SimResult(policy.name, 0.0, 0.0, 0.0, empty, dict.fromkeys(ORDER[1:], 0), ())
    return _Replay(sessions, policy, costs, tick_s, every_tick).run()


class _Replay:
    def __init__(
        self,
        sessions: Sequence[Session],
        policy: Policy,
        costs: WakeCosts,
        tick_s: float,
        every_tick: bool,
    ) -> None:
        self.sessions, self.policy, self.costs = sessions, policy, costs
        self.tick_s, self.every_tick = tick_s, every_tick
        self.start = min(s.start for s in sessions)
        self.end = max(s.end for s in sessions)
        initial = policy.initial
        idle_since = self.start - policy.thresholds.begins(initial)
        self.ladder = Ladder(policy.thresholds, state=initial, last_activity=idle_since)
        self.state, self.mark = initial, self.start
        self.seconds = dict.fromkeys(ORDER, 0.0)
        self.off_s = 0.0
        self.wakes = dict.fromkeys(ORDER[1:], 0)
        self.host_on = initial not in policy.host_off
        self.host_ready = -math.inf
        roles = set(costs.load_s) | set(costs.needs)
        parked = policy.parked.get(initial, frozenset()) & roles if self.host_on else set()
        loaded = roles - policy.unloaded[initial] - parked if self.host_on else set()
        self.ready = dict.fromkeys(loaded, -math.inf)  # role -> when its load is done
        self.parked = set(parked)  # roles whose weights wait in host RAM
        self.next_k = math.ceil(self.start / tick_s)

    def run(self) -> SimResult:
        events = sorted(
            [(s.start, 0, i) for i, s in enumerate(self.sessions)]
            + [(s.end, 1, i) for i, s in enumerate(self.sessions)]
        )
        waits = [0.0] * len(self.sessions)
        for at, kind, index in events:
            self._ticks_until(at)
            if kind == 0:
                waits[index] = self._open(str(index), at)
            else:
                self.ladder.session_closed(str(index), at)
        self._ticks_until(self.end)
        self._account(self.end)
        billed = (self.end - self.start) - self.off_s
        active = active_seconds(self.sessions)
        span = self.end - self.start
        return SimResult(
            self.policy.name, span, active, billed, self.seconds, self.wakes, tuple(waits)
        )

    def _ticks_until(self, until: float) -> None:
        """Run the ticks at grid times <= ``until`` that can change anything."""
        tick_s = self.tick_s
        while True:
            k = self.next_k
            if not self.every_tick:
                due = self.ladder.next_step_at(until)
                if due is None or math.isinf(due):
                    break
                k = max(k, math.ceil(due / tick_s) - 1)  # one early: float rounding
            at = k * tick_s
            if at > until:
                break
            self.next_k = k + 1
            transition = self.ladder.tick(at)
            if transition is not None:
                self._descend(at, transition.target)
        after = math.floor(until / tick_s) + 1  # ticks skipped up to here were no-ops
        while (after - 1) * tick_s > until:
            after -= 1
        while after * tick_s <= until:
            after += 1
        self.next_k = max(self.next_k, after)

    def _account(self, at: float) -> None:
        spent = at - self.mark
        self.seconds[self.state] += spent
        if self.state in self.policy.host_off:
            self.off_s += spent
        self.mark = at

    def _descend(self, at: float, target: IdleState) -> None:
        self._account(at)
        self.state = target
        for role in self.policy.unloaded[target]:
            self.ready.pop(role, None)
            self.parked.discard(role)
        for role in self.policy.parked.get(target, frozenset()):
            if self.ready.pop(role, None) is not None:
                self.parked.add(role)
        if target in self.policy.host_off:
            self.host_on = False
            self.ready.clear()
            self.parked.clear()

    def _open(self, session_id: str, at: float) -> float:
        transition = self.ladder.session_opened(session_id, at)
        if transition is not None:
            self._account(at)
            self.state = transition.target
            self.wakes[transition.source] += 1
        if not self.host_on:
            self.host_on = True
            self.host_ready = at + self.costs.host_boot_s
        begin = max(at, self.host_ready)
        for role in self.costs.needs:
            if role not in self.ready:
                self.ready[role] = begin + self.costs.wake_s(role, role in self.parked)
                self.parked.discard(role)
        return max(0.0, self.host_ready - at, *(self.ready[r] - at for r in self.costs.needs))
