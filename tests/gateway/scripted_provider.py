"""A host provider whose machine is a few fields and whose answers the test scripts.

It stands in for a cloud provider in the controller's tests (the real providers are tested
against their APIs' peers). Starts and stops can be held on an event, made to fail, and
counted; ``preempt()`` stops the machine behind the gateway's back.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from orchestrator.gateway.errors import HostStartFailed
from orchestrator.gateway.providers.base import HostView, PowerState


@dataclass
class ScriptedProvider:
    name: str = "scripted"
    state: PowerState = PowerState.STOPPED
    url: str = "http://10.0.0.5:11400"
    starts: int = 0
    stops: int = 0
    fail_starts: list[str] = field(default_factory=list)  # one failure reason per start
    start_gate: asyncio.Event | None = None  # start waits on it when set
    stop_gate: asyncio.Event | None = None
    detail: str = ""

    def view(self) -> HostView:
        running = self.state is PowerState.RUNNING
        return HostView(self.state, self.url if running else None, "zone-a/gpu-1", self.detail)

    async def status(self) -> HostView:
        return self.view()

    async def start(self) -> HostView:
        self.starts += 1
        if self.start_gate is not None:
            self.state = PowerState.STARTING
            await self.start_gate.wait()
        if self.fail_starts:
            self.state = PowerState.STOPPED
            raise HostStartFailed(self.fail_starts.pop(0), stockout=True)
        self.state, self.detail = PowerState.RUNNING, ""
        return self.view()

    async def stop(self) -> HostView:
        self.stops += 1
        if self.stop_gate is not None:
            self.state = PowerState.STOPPING
            await self.stop_gate.wait()
        self.state = PowerState.STOPPED
        return self.view()

    def preempt(self) -> None:
        self.state, self.detail = PowerState.STOPPED, "TERMINATED (preempted)"

    async def close(self) -> None:
        return None


@dataclass
class ScriptedProbe:
    """The host's ``/health/ready``: answers ``ready`` while the machine runs."""

    provider: ScriptedProvider
    ready: bool = True
    asked: int = 0

    async def __call__(self, url: str) -> bool:
        self.asked += 1
        return self.ready and self.provider.state is PowerState.RUNNING


class Clock:
    """Wall-clock time the test moves by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
