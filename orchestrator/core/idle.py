"""The idle ladder's vocabulary: its states in order, and the idle time at which each begins.

Shared by the configuration (per-state actions and thresholds), the ladder that moves between
the states, the simulator and the console; the state machine itself is ``hibernation.ladder``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class IdleState(StrEnum):
    ACTIVE = "active"
    WARM = "warm"
    COOL = "cool"
    COLD = "cold"
    DORMANT = "dormant"

    @property
    def depth(self) -> int:
        return ORDER.index(self)


ORDER = [IdleState.ACTIVE, IdleState.WARM, IdleState.COOL, IdleState.COLD, IdleState.DORMANT]


@dataclass(frozen=True)
class Thresholds:
    """Idle seconds after which each state begins."""

    warm: float
    cool: float
    cold: float
    dormant: float

    def state_for(self, idle_s: float) -> IdleState:
        for state, limit in (
            (IdleState.DORMANT, self.dormant),
            (IdleState.COLD, self.cold),
            (IdleState.COOL, self.cool),
            (IdleState.WARM, self.warm),
        ):
            if idle_s >= limit:
                return state
        return IdleState.ACTIVE

    def begins(self, state: IdleState) -> float:
        return {
            IdleState.ACTIVE: 0.0,
            IdleState.WARM: self.warm,
            IdleState.COOL: self.cool,
            IdleState.COLD: self.cold,
            IdleState.DORMANT: self.dormant,
        }[state]
