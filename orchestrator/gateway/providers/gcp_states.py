"""What Compute Engine's answers mean to the gateway: statuses, error codes, unasked stops.

Pure, without the SDK: ``gcp.py`` calls the API and asks this module what the answers mean,
so the meaning is tested without a server and the SDK stays in one module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.config.gateway import GcpInstance
from orchestrator.gateway.errors import HostStartFailed
from orchestrator.gateway.providers.base import PowerState

P = PowerState
STATES: dict[str, PowerState] = {
    "PENDING": P.STARTING,  # waiting for capacity to be provisioned
    "PROVISIONING": P.STARTING,
    "STAGING": P.STARTING,
    "REPAIRING": P.STARTING,
    "RUNNING": P.RUNNING,
    "PENDING_STOP": P.STOPPING,  # a graceful shutdown before STOPPING
    "STOPPING": P.STOPPING,
    "SUSPENDING": P.STOPPING,
    "DEPROVISIONING": P.STOPPING,
    "TERMINATED": P.STOPPED,
    "STOPPED": P.STOPPED,
    "SUSPENDED": P.STOPPED,
}
"""Instance ``status`` (the API's enum) to power state; any other status is UNKNOWN."""

UP = frozenset({P.RUNNING, P.STARTING})
DOWN = frozenset({P.STOPPED, P.STOPPING})

STOCKOUT_CODES = frozenset(
    {
        "ZONE_RESOURCE_POOL_EXHAUSTED",
        "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
        "RESOURCE_POOL_EXHAUSTED",
        "STOCKOUT",
        "resource_availability",  # the ErrorInfo reason that comes with the two zone codes
    }
)
"""A zone without capacity for the machine: a twin elsewhere may start, and so may this one
later."""

QUOTA_CODES = frozenset({"QUOTA_EXCEEDED", "quotaExceeded"})
"""A project limit: waiting does not help; a zone of another region may (regional quota)."""


def power_state(status: str) -> PowerState:
    return STATES.get(status, P.UNKNOWN)


def instance_key(target: GcpInstance) -> str:
    """How an instance is named in views and messages: ``zone/name``."""
    return f"{target.zone}/{target.name}"


def region_of(zone: str) -> str:
    """``us-central1-a`` -> ``us-central1``."""
    return zone.rsplit("-", 1)[0]


@dataclass(frozen=True)
class Failure:
    """Why one instance did not start, in Compute Engine's words and codes."""

    instance: str
    reason: str
    codes: frozenset[str] = frozenset()

    @property
    def stockout(self) -> bool:
        return bool(self.codes & STOCKOUT_CODES)

    @property
    def quota(self) -> bool:
        return bool(self.codes & QUOTA_CODES)


def start_failed(failures: Sequence[Failure]) -> HostStartFailed:
    """One error for the whole attempt: each instance's reason, and ``stockout`` only when
    every instance tried was out of capacity (a quota or a broken instance will not mend by
    itself, a stockout may)."""
    reasons = "; ".join(f"{failure.instance}: {failure.reason}" for failure in failures)
    stockout = bool(failures) and all(failure.stockout for failure in failures)
    return HostStartFailed(f"no gcp instance could start: {reasons}", stockout=stockout)


class StopTracker:
    """Tells the stops we asked for from the others (preempted, stopped by hand).

    An instance seen up and then found stopping or stopped while no stop was asked is noted,
    and the note stays in its views until the gateway next starts or stops it."""

    def __init__(self) -> None:
        self._seen: dict[str, PowerState] = {}
        self._notes: dict[str, str] = {}
        self._stop_asked = False

    def asked_start(self, name: str) -> None:
        self._stop_asked = False
        self._notes.pop(name, None)

    def asked_stop(self, name: str) -> None:
        self._stop_asked = True
        self._notes.pop(name, None)

    def did_not_start(self, name: str) -> None:
        """A start that failed took the instance down again: that is no preemption."""
        self._seen[name] = P.STOPPED

    def see(self, name: str, state: PowerState, *, spot: bool) -> str:
        """Record the state; the note on why it is down ("" when none)."""
        if state in DOWN and self._seen.get(name) in UP and not self._stop_asked:
            self._notes[name] = (
                "preempted: a Spot instance stopped outside the gateway"
                if spot
                else "stopped outside the gateway"
            )
        self._seen[name] = state
        return self._notes.get(name, "") if state in DOWN else ""
