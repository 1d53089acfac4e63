"""A ``HostGate`` the test drives: it stands for the host controller, and its ``ready_url`` is
the base URL of a real orchestrator API (the host).

Readiness is an ``asyncio.Event`` the test sets (``become_ready``); every call the front door
makes is recorded (uses, losses, wakes), and ``until`` waits for a condition on them, so a test
synchronises on what the gateway did instead of sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from orchestrator.core.events import EventBus, Subscription
from orchestrator.gateway.errors import HostStartFailed, HostWaking
from orchestrator.gateway.gate import UseKind
from orchestrator.gateway.lifecycle import UP, WAKING, HostSnapshot, HostState


class ScriptedGate:
    def __init__(self, url: str, host_key: str, *, eta_s: float = 42.0) -> None:
        self.host_key = host_key
        self.url = url
        self.eta_s = eta_s
        self.state = HostState.STOPPED
        self.since = time.time()
        self.cause = ""
        self.failure: HostStartFailed | None = None  # raised by ready_url while set
        self.bus = EventBus()
        self.open: Counter[str] = Counter()  # uses open now, by kind
        self.uses: list[str] = []  # every use ever begun, in order
        self.lost: list[str] = []
        self.wakes: list[str] = []
        self.ready_calls = 0
        self.waiting = 0  # callers inside ready_url now
        self._ready = asyncio.Event()
        self._changed = asyncio.Event()

    # --- what the test does -------------------------------------------------------------

    def move(self, state: HostState, cause: str = "test") -> None:
        """A transition, published as the controller publishes it."""
        self.state, self.since, self.cause = state, time.time(), cause
        if state in UP:
            self._ready.set()
        else:
            self._ready.clear()
        self.bus.publish("host", **self.snapshot().to_json())
        self._poke()

    def become_ready(self) -> None:
        self.move(HostState.READY, "ready")

    async def until(self, condition: Callable[[], bool], timeout: float = 30.0) -> None:
        """Wait until ``condition()`` holds, re-checked on each recorded call."""
        async with asyncio.timeout(timeout):
            while not condition():
                changed = self._changed
                await changed.wait()

    def _poke(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # --- HostGate -----------------------------------------------------------------------

    def snapshot(self) -> HostSnapshot:
        if self.state in UP:
            eta, progress = 0.0, 1.0
        elif self.state in WAKING:
            eta, progress = self.eta_s, 0.25
        else:
            eta, progress = None, 0.0
        return HostSnapshot(
            state=self.state,
            since=self.since,
            eta_s=eta,
            progress=progress,
            instance="scripted",
            last_failure=self.failure.reason if self.failure else None,
            cause=self.cause,
        )

    async def ready_url(self, timeout_s: float) -> str:
        self.ready_calls += 1
        if self.failure is not None:
            self._poke()
            raise self.failure
        if self.state in (HostState.STOPPED, HostState.FAILED):
            self.move(HostState.STARTING, "request")
        self.waiting += 1
        self._poke()
        try:
            async with asyncio.timeout(timeout_s):
                await self._ready.wait()
        except TimeoutError:
            raise HostWaking(self.state.value, self.eta_s) from None
        finally:
            self.waiting -= 1
            self._poke()
        return self.url

    @contextmanager
    def use(self, kind: UseKind) -> Iterator[None]:
        self.open[kind] += 1
        self.uses.append(kind)
        self._poke()
        try:
            yield
        finally:
            self.open[kind] -= 1
            self._poke()

    def host_lost(self, reason: str) -> None:
        self.lost.append(reason)
        self._poke()

    async def wake(self, cause: str) -> HostSnapshot:
        self.wakes.append(cause)
        if self.state in (HostState.STOPPED, HostState.FAILED):
            self.move(HostState.STARTING, cause)
        self._poke()
        return self.snapshot()

    async def stop(self, cause: str) -> HostSnapshot:
        self.move(HostState.STOPPED, cause)
        return self.snapshot()

    def subscribe(self) -> Subscription:
        return self.bus.subscribe()
