"""Which back-end a full-duplex session gets: the duplex engine (one conversation at a time) or
the cascade (many). ``choose`` is the pure decision; ``DuplexRouter`` holds the one slot.

    policy         not configured   slot held         engine not loaded    free and loaded
    -------------  ---------------  ----------------  -------------------  ---------------
    cascade-only   cascade          cascade           cascade              cascade
    duplex-first   cascade          cascade           cascade (+ wake it)  duplex
    duplex-only    refuse           refuse (busy)     duplex (waits load)  duplex
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from orchestrator.config.duplex import DuplexConfig, Policy
from orchestrator.fleet.fleet import Fleet
from services.base import EngineState, Role
from services.errors import VoiceOrchestratorError

log = logging.getLogger(__name__)

Backend = Literal["duplex", "cascade"]


class DuplexUnavailable(VoiceOrchestratorError):
    """Policy ``duplex-only`` and the duplex engine cannot take this session now."""

    code = "duplex_unavailable"
    status = 503
    transient = True  # the engine is in another conversation, or not configured yet
    retry_after_s = 5


@dataclass(frozen=True)
class Route:
    backend: Backend
    reason: str
    wake: bool = False  # start loading the duplex engine for the sessions after this one


def choose(policy: Policy, *, configured: bool, loaded: bool, holder: str | None) -> Route:
    """The table in the module docstring; raises DuplexUnavailable where it says refuse."""
    if policy == "cascade-only":
        return Route("cascade", "policy is cascade-only")
    if not configured:
        if policy == "duplex-only":
            raise DuplexUnavailable("no duplex engine is configured")
        return Route("cascade", "no duplex engine is configured")
    if holder is not None:
        if policy == "duplex-only":
            raise DuplexUnavailable("the duplex engine is in another conversation")
        return Route("cascade", f"the duplex engine is in conversation {holder}")
    if not loaded:
        if policy == "duplex-only":
            return Route("duplex", "the duplex engine is loading")
        return Route("cascade", "the duplex engine is not loaded", wake=True)
    return Route("duplex", "the duplex engine is free")


class DuplexRouter:
    """Hands the duplex engine to one session at a time; ``release`` gives it back."""

    def __init__(self, config: DuplexConfig, fleet: Fleet) -> None:
        self.config = config
        self.fleet = fleet
        self.holder: str | None = None

    @property
    def engine_name(self) -> str | None:
        name = self.config.engine
        return name if name in self.fleet.names_for([Role.DUPLEX]) else None

    def route(self, session_id: str) -> Route:
        """Decide for a new session; a duplex route holds the slot until ``release``."""
        name = self.engine_name
        loaded = name is not None and self.fleet.engine(name).state is EngineState.LOADED
        route = choose(
            self.config.policy, configured=name is not None, loaded=loaded, holder=self.holder
        )
        if route.backend == "duplex":
            self.holder = session_id
        elif route.wake and self.config.wake_duplex and name is not None:
            state = self.fleet.engine(name).state
            if state in (EngineState.UNLOADED, EngineState.PARKED):
                log.info("waking %s for the next duplex session", name)
                self.fleet.prewarm([name])
        return route

    def release(self, session_id: str) -> None:
        if self.holder == session_id:
            self.holder = None
