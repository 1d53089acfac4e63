"""The host controller: what the front door and the operator call (the ``HostGate``).

Nothing here changes the host's state: each call says what it wants and kicks the writer
(``writer.py``), then waits on the transitions it publishes. Readers get a consistent snapshot
at any time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Iterator

from orchestrator.core.events import Subscription, wait_for_event
from orchestrator.gateway.errors import HostStartFailed, HostWaking
from orchestrator.gateway.gate import UseKind
from orchestrator.gateway.lifecycle import (
    UP,
    HostSnapshot,
    HostState,
)
from orchestrator.gateway.store import HostTransition
from orchestrator.gateway.writer import HostWriter

log = logging.getLogger(__name__)

S = HostState


class HostController(HostWriter):
    """The ``HostGate`` the front door holds, and the operator's wake and stop."""

    async def ready_url(self, timeout_s: float) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        self._ask_up("request")
        while True:
            if self._state in UP and self._url:
                return self._url
            if self._state is S.FAILED and self._retry_at is not None:
                wait_s = self._retry_at - self._clock()
                if wait_s > 0:
                    raise HostStartFailed(
                        self._failure or "the host failed to start",
                        retry_after_s=max(1, math.ceil(wait_s)),
                    )
            remaining = deadline - loop.time()
            if remaining <= 0:
                snapshot = self.snapshot()
                raise HostWaking(snapshot.state.value, snapshot.eta_s or self.expected_start()[0])
            await wait_for_event(self._moved, remaining)

    @contextlib.contextmanager
    def use(self, kind: UseKind) -> Iterator[None]:
        self._uses += 1
        self._last_used = began = self._clock()
        self._kick.set()
        try:
            yield
        finally:
            self._uses -= 1
            self._last_used = self._clock()
            self._kick.set()
            if kind == "session":  # what the learned pre-warm learns from
                self._record_visit(began, self._last_used, hint=False)

    def host_lost(self, reason: str) -> None:
        self._lost = reason
        self._kick.set()

    async def wake(self, cause: str) -> HostSnapshot:
        if cause == "app":  # the app came to the foreground: a student is about to come
            now = self._clock()
            self._record_visit(now, now, hint=True)
        self._ask_up(cause)
        log.info("wake asked (%s) with the host %s", cause, self._state)
        return self.snapshot()

    async def stop(self, cause: str) -> HostSnapshot:
        self._hold_until = None  # a stop asked overrules the plan's hold
        if self._state not in (S.STOPPED, S.STOPPING):
            self._stop_cause = cause
            moved = self._moved
            self._kick.set()
            await wait_for_event(moved, 5.0)
        return self.snapshot()

    def set_idle_stop(self, seconds: float, why: str) -> None:
        """How long an idle host stays up from now on (the learned idle stop, or back to
        ``stop_after_s``); ``why`` goes into the drain's cause."""
        self._stop_after_s, self._stop_after_why = seconds, why
        self._kick.set()

    def hold(self, until: float, why: str) -> None:
        """Keep the host up (once it is up) until ``until``, idle or not: a planned pre-warm
        or keep-on window. A later hold extends it; an earlier one changes nothing."""
        if (
            self._hold_until is None
            or until > self._hold_until
            or self._clock() >= self._hold_until
        ):
            self._hold_until, self._hold_why = until, why
        self._kick.set()

    def idle_stop(self) -> tuple[float, str]:
        """(seconds, why): how long an idle host stays up now."""
        return self._stop_after_s, self._stop_after_why

    def holding(self) -> tuple[float, str] | None:
        """(until, why) while a hold keeps the host up, else None."""
        if self._hold_until is None or self._clock() >= self._hold_until:
            return None
        return self._hold_until, self._hold_why

    def visits(self) -> list[tuple[float, float, bool]]:
        """Every recorded session (start, end) and app wake hint: blocks briefly on disk."""
        return self._store.visits()

    def _record_visit(self, start: float, end: float, *, hint: bool) -> None:
        write = asyncio.to_thread(self._store.add_visit, start, end, hint=hint)
        self._tasks.spawn("record-visit", write)

    async def settle(self) -> None:
        """Return once the writer has run a whole step after this call (for tests and the
        console: what was asked before it has been acted on)."""
        target = self._steps + (2 if self._stepping else 1)
        self._kick.set()
        while self._steps < target:
            stepped = self._stepped
            await stepped.wait()

    def subscribe(self) -> Subscription:
        return self.bus.subscribe()

    def transitions(self, *, since: float = 0.0, limit: int | None = 1000) -> list[HostTransition]:
        return self._store.transitions(since=since, limit=limit)

    # -- lifetime -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._durations = await asyncio.to_thread(self._store.start_durations)
        await self._adopt()
        self._tasks.spawn("host-controller", self._run())

    async def close(self) -> None:
        """Stop deciding; the host is left as it is (a gateway restart must not stop it)."""
        await self._tasks.cancel_all()
