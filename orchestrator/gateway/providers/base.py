"""The host provider contract: start, stop and status of the GPU host, and its address.

A provider is a thin adapter over one way of powering a machine (a cloud API, shell commands,
a local process). It holds no policy: when to start or stop is the controller's decision. Every
call is safe to repeat: starting a running host or stopping a stopped one reports its state.
Cloud providers try their fallback instances, in order, when a start fails for want of capacity,
and report which instance they are on.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class PowerState(StrEnum):
    """What the provider says of the machine (not whether the orchestrator on it answers)."""

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class HostView:
    state: PowerState
    url: str | None = None  # the orchestrator's base URL on the host, once it has an address
    instance: str = ""  # which machine (a fallback twin may be the one running)
    detail: str = ""  # the provider's own words: "TERMINATED (preempted)", a command's output


class HostProvider(Protocol):
    name: str

    async def status(self) -> HostView:
        """The machine's state now; ``ProviderError`` if the provider cannot be asked."""
        ...

    async def start(self) -> HostView:
        """Ask the machine to start and wait until the provider accepted it (the VM is running
        or booting). ``HostStartFailed`` with the reason if no instance could start."""
        ...

    async def stop(self) -> HostView:
        """Ask the machine to stop and wait until the provider says it is stopping or stopped."""
        ...

    async def close(self) -> None:
        """Release clients and child processes (the local provider stops its server)."""
        ...
