"""The host's one writer: the task that moves the host's state (``lifecycle.py``).

Requests, sessions, the app's wake-up calls and the operator's buttons never change the state
themselves (``controller.py`` is what they call): they set what they want (up, stopped, "look
now") and kick this task, which acts on the provider, probes the host and moves the state.
Concurrent asks collapse into one provider call: a start is single-flight, and a start asked
while the host stops waits for STOPPED, then starts.

When the gateway starts, the provider's view is the truth: a gateway restarted while the host
boots finds it booting (or ready) and carries on; the wake's start time comes from the stored
history, so the measured start-to-ready duration stays honest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable

from orchestrator.config.gateway import GatewayConfig
from orchestrator.core.events import EventBus, wait_for_event
from orchestrator.gateway.errors import HostStartFailed, ProviderError
from orchestrator.gateway.lifecycle import (
    UP,
    WAKING,
    HostSnapshot,
    HostState,
    check_move,
    eta,
    expected_start_s,
    start_asked_at,
)
from orchestrator.gateway.policy import Decision, Usage, decide
from orchestrator.gateway.providers.base import HostProvider, HostView, PowerState
from orchestrator.gateway.readiness import ReadyProbe
from orchestrator.gateway.store import GatewayStore, HostTransition
from services.tasks import TaskSet

log = logging.getLogger(__name__)

S = HostState
_MISSES_BEFORE_LOOKING = 3  # failed readiness probes in a row before asking the provider


class HostWriter:
    """The state, and the task that alone changes it."""

    def __init__(
        self,
        provider: HostProvider,
        config: GatewayConfig,
        store: GatewayStore,
        *,
        host_key: str,
        probe: ReadyProbe,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host_key = host_key
        self.bus = EventBus()
        self._provider = provider
        self._config = config
        self._store = store
        self._probe = probe
        self._clock = clock
        self._tasks = TaskSet("gateway")
        self._state = S.STOPPED
        self._since = clock()
        self._cause = "gateway started"
        self._view = HostView(PowerState.UNKNOWN)
        self._url: str | None = None
        self._failure: str | None = None
        self._retry_at: float | None = None
        self._failures = 0
        self._waking_since: float | None = None
        self._draining_since: float | None = None
        self._last_probe = -math.inf
        self._misses = 0
        self._uses = 0
        self._last_used = clock()
        self._want_up = False
        self._up_cause = "request"
        self._stop_cause: str | None = None
        self._lost: str | None = None
        self._durations: list[float] = []
        # How long an idle host stays up (``stop_after_s`` or the learned idle stop), and
        # when a planned start asks it to stay up until, each with the reason shown.
        self._stop_after_s = config.stop_after_s
        self._stop_after_why = f"stop_after_s {config.stop_after_s:.0f} s"
        self._hold_until: float | None = None
        self._hold_why = ""
        self._kick = asyncio.Event()
        self._moved = asyncio.Event()
        self._steps = 0
        self._stepping = False
        self._stepped = asyncio.Event()

    def snapshot(self) -> HostSnapshot:
        now = self._clock()
        p50, _p95 = self.expected_start()
        waking_for = now - self._waking_since if self._waking_since is not None else 0.0
        eta_s, progress = eta(self._state, waking_for, p50)
        if eta_s is None and self._want_up:  # a start is asked and about to be made
            backoff = max(0.0, (self._retry_at or now) - now) if self._state is S.FAILED else 0
            eta_s = backoff + p50
        return HostSnapshot(
            state=self._state,
            since=self._since,
            eta_s=None if eta_s is None else round(eta_s, 1),
            progress=round(progress, 3),
            instance=self._view.instance,
            last_failure=self._failure,
            retry_at=self._retry_at,
            cause=self._cause,
        )

    def expected_start(self) -> tuple[float, float]:
        """(p50, p95) start-to-ready seconds: the ETA the gateway announces."""
        return expected_start_s(self._durations, self._config.default_eta_s)

    @property
    def open_uses(self) -> int:
        return self._uses

    # -- the writer ---------------------------------------------------------------------------

    def _ask_up(self, cause: str) -> None:
        if self._state not in UP:
            if not self._want_up:
                self._up_cause = cause  # the first ask is why the host starts
            self._want_up = True
        self._kick.set()

    async def _adopt(self) -> None:
        """Take the provider's word for where the host is, and carry on from there."""
        view = await self._look()
        history = await asyncio.to_thread(self._store.transitions, limit=20)
        last = history[-1] if history else None
        if view.state in (PowerState.RUNNING, PowerState.STARTING):
            self._waking_since = start_asked_at(history) or self._clock()
            ready = view.state is PowerState.RUNNING and await self._ready()
            if ready:
                await self._move(S.READY, f"gateway started: {view.instance or 'host'} is ready")
                self._last_used = self._clock()
            else:
                self._want_up = True
                target = S.BOOTING if view.state is PowerState.RUNNING else S.STARTING
                await self._move(target, f"gateway started: the host is {view.state.value}")
        elif view.state is PowerState.STOPPING:
            await self._move(S.STOPPING, "gateway started: the host is stopping")
        elif last is None or last.target != S.STOPPED.value:
            await self._move(S.STOPPED, f"gateway started: the host is {view.state.value}")

    async def _run(self) -> None:
        while True:
            self._stepping = True
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("host controller step failed; trying again")
            finally:
                self._stepping = False
            self._steps += 1
            stepped, self._stepped = self._stepped, asyncio.Event()
            stepped.set()
            await self._pause()

    async def _pause(self) -> None:
        await wait_for_event(self._kick, self._next_look_in())
        self._kick.clear()

    def _next_look_in(self) -> float | None:
        """How long the writer may sleep before something is due (None: until kicked)."""
        now = self._clock()
        poll = self._config.poll_s
        if self._state in WAKING or self._state is S.STOPPING:
            return poll
        if self._state is S.FAILED:
            if self._want_up and self._retry_at is not None:
                return max(0.0, self._retry_at - now)
            return None
        if self._state is S.READY:
            health = self._last_probe + 5 * poll - now
            if self._uses == 0:
                idle_due = self._last_used + self._stop_after_s
                if self._hold_until is not None:
                    idle_due = max(idle_due, self._hold_until)
                health = min(health, idle_due - now)
            return max(0.0, health)
        if self._state is S.DRAINING and self._draining_since is not None:
            due = self._draining_since + self._config.drain_s - now
            return max(0.0, min(due, self._last_probe + 5 * poll - now))
        return None

    async def _step(self) -> None:
        if self._stop_cause is not None:
            cause, self._stop_cause = self._stop_cause, None
            self._want_up = False
            if self._state not in (S.STOPPED, S.STOPPING):
                await self._stop(cause)
            return
        if self._lost is not None:
            reason, self._lost = self._lost, None
            if self._state in UP or self._state is S.BOOTING:
                await self._recheck(reason)
        state, now = self._state, self._clock()
        if state in (S.STOPPED, S.FAILED):
            if self._want_up and (self._retry_at is None or now >= self._retry_at):
                await self._start()
        elif state is S.STARTING:
            await self._check_starting(now)
        elif state is S.BOOTING:
            await self._check_boot(now)
        elif state in UP:
            await self._check_up(now)
        elif state is S.STOPPING:
            await self._check_stopping()

    async def _start(self) -> None:
        self._waking_since = self._clock()
        await self._move(S.STARTING, f"start asked ({self._up_cause})")
        try:
            view = await self._provider.start()
        except HostStartFailed as exc:
            await self._fail(exc.reason)
            return
        except ProviderError as exc:
            await self._fail(str(exc))
            return
        self._seen(view)
        if view.state is PowerState.RUNNING:
            await self._move(S.BOOTING, f"{view.instance or 'host'} runs; waiting for its server")

    async def _check_starting(self, now: float) -> None:
        view = await self._look()
        if view.state is PowerState.RUNNING:
            await self._move(S.BOOTING, f"{view.instance or 'host'} runs; waiting for its server")
        elif view.state in (PowerState.STOPPED, PowerState.STOPPING):
            await self._fail(f"the host stopped while starting ({view.detail or view.state})")
        elif self._boot_overdue(now):
            await self._fail(f"the host did not start in {self._config.start_timeout_s:.0f} s")

    async def _check_boot(self, now: float) -> None:
        if self._url is None:
            self._seen(await self._look())
        if await self._ready():
            started = self._waking_since if self._waking_since is not None else now
            seconds = self._clock() - started
            await asyncio.to_thread(self._store.add_start, now, seconds, self._view.instance)
            self._durations = [seconds, *self._durations][:50]
            self._failures, self._failure, self._retry_at = 0, None, None
            self._want_up = False
            self._last_used = self._clock()
            await self._move(S.READY, f"the host answers ready after {seconds:.1f} s")
            return
        if self._boot_overdue(now):
            reason = f"the host was not ready {self._config.start_timeout_s:.0f} s after its start"
            with contextlib.suppress(ProviderError):  # do not pay for a host that never came;
                self._seen(await self._provider.stop())  # stopped first, so FAILED records it
            await self._fail(reason)
            return
        if self._misses and self._misses % 5 == 0:
            view = await self._look()
            if view.state in (PowerState.STOPPED, PowerState.STOPPING):
                await self._fail(f"the host stopped while booting ({view.detail or view.state})")

    async def _check_up(self, now: float) -> None:
        if now - self._last_probe >= 5 * self._config.poll_s:
            if await self._ready():
                self._misses = 0
            elif self._misses >= _MISSES_BEFORE_LOOKING:
                await self._recheck("the host stopped answering /health/ready")
                return
        usage = Usage(open_uses=self._uses, last_used_at=self._last_used)
        decision = decide(
            self._state,
            usage,
            now,
            draining_since=self._draining_since,
            stop_after_s=self._stop_after_s,
            drain_s=self._config.drain_s,
            hold_until=self._hold_until,
        )
        if decision is Decision.DRAIN:
            self._draining_since = now
            idle = now - self._last_used
            cause = f"no request or session for {idle:.0f} s ({self._stop_after_why})"
            await self._move(S.DRAINING, cause)
        elif decision is Decision.UNDRAIN:
            self._draining_since = None
            held = self._hold_until is not None and now < self._hold_until
            await self._move(S.READY, self._hold_why if held else "used again while draining")
        elif decision is Decision.STOP:
            await self._stop(f"idle: drained for {self._config.drain_s:.0f} s")

    async def _check_stopping(self) -> None:
        view = await self._look()
        if view.state is PowerState.STOPPED:
            await self._move(S.STOPPED, f"the provider says stopped ({view.detail or 'ok'})")
        elif view.state in (PowerState.RUNNING, PowerState.STARTING):
            with contextlib.suppress(ProviderError):
                self._seen(await self._provider.stop())  # asked again: stops are idempotent

    async def _stop(self, cause: str) -> None:
        self._draining_since = None
        await self._move(S.STOPPING, cause)
        try:
            view = await self._provider.stop()
        except ProviderError as exc:
            log.error("stopping the host failed (will ask again): %s", exc)
            return
        self._seen(view)
        if view.state is PowerState.STOPPED:
            await self._move(S.STOPPED, f"stopped ({cause})")

    async def _recheck(self, reason: str) -> None:
        """The host may be gone: ask the provider, and believe it."""
        view = await self._look()
        self._draining_since = None
        if view.state in (PowerState.STOPPED, PowerState.UNKNOWN):
            detail = view.detail or "stopped outside the gateway"
            self._url = None
            await self._move(S.STOPPED, f"{reason}; the host is {view.state.value}: {detail}")
        elif view.state is PowerState.STOPPING:
            await self._move(S.STOPPING, f"{reason}; the host is stopping")
        elif await self._ready():
            self._misses = 0
        else:
            self._waking_since = self._clock()
            self._want_up = True
            await self._move(S.BOOTING, f"{reason}; its machine runs, its server does not answer")

    async def _fail(self, reason: str) -> None:
        self._failures += 1
        backoff = min(
            self._config.backoff_s * 2 ** (self._failures - 1), self._config.backoff_max_s
        )
        self._failure = reason
        self._retry_at = self._clock() + backoff
        self._want_up = self._uses > 0  # retried after the backoff only while someone waits
        log.error("host start failed (retry in %.0f s): %s", backoff, reason)
        await self._move(S.FAILED, reason)

    # -- helpers ------------------------------------------------------------------------------

    def _boot_overdue(self, now: float) -> bool:
        started = self._waking_since if self._waking_since is not None else now
        return now - started > self._config.start_timeout_s

    async def _look(self) -> HostView:
        try:
            view = await self._provider.status()
        except ProviderError as exc:
            log.warning("cannot see the host: %s", exc)
            return HostView(PowerState.UNKNOWN, detail=str(exc))
        self._seen(view)
        return view

    def _seen(self, view: HostView) -> None:
        self._view = view
        if view.url:
            self._url = view.url

    async def _ready(self) -> bool:
        self._last_probe = self._clock()
        ok = self._url is not None and await self._probe(self._url)
        self._misses = 0 if ok else self._misses + 1
        return ok

    async def _move(self, target: HostState, cause: str) -> None:
        """Record the transition, then make it visible: whoever sees the new state finds it
        in the history too. Nothing else writes, so nothing moves while the record is stored."""
        source = self._state
        check_move(source, target)
        now = self._clock()
        record = HostTransition(
            at=now,
            source=source.value,
            target=target.value,
            cause=cause,
            instance=self._view.instance,
            power=self._view.state.value,
        )
        await asyncio.to_thread(self._store.add_transition, record)
        self._state, self._since, self._cause = target, now, cause
        if target not in WAKING:
            self._waking_since = None
        log.info("host %s -> %s: %s", source, target, cause)
        self.bus.publish("host", **self.snapshot().to_json())
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()
