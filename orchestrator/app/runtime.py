"""Everything one running server shares between its voice API and its console, and its lifecycle.

``start()`` restores the hibernation state, starts the single writer, the scheduler tick and the
fleet's preparation; ``stop()`` undoes all of it in reverse, leaving no task or engine behind.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from orchestrator.config import AppConfig
from orchestrator.config.secrets import Secrets
from orchestrator.core.events import EventBus
from orchestrator.core.idle import IdleState
from orchestrator.core.metrics import Metrics, WakeTimer
from orchestrator.core.store import StateStore
from orchestrator.credits.ledger import Ledger
from orchestrator.fleet.fleet import Fleet
from orchestrator.gpu.admission import Admission
from orchestrator.gpu.metrics import GpuGauges
from orchestrator.gpu.sampler import GpuSampler
from orchestrator.hibernation.hibernator import Hibernator
from orchestrator.hibernation.host_power import HostPower, host_power_from_config
from orchestrator.hibernation.ladder import Ladder
from orchestrator.voice.boundary import SessionDeps
from services.base import EngineState
from services.process.supervisor import Supervisor

log = logging.getLogger(__name__)

AWAKE_STATES = (IdleState.ACTIVE, IdleState.WARM)


@dataclass
class Runtime:
    config: AppConfig
    secrets: Secrets
    metrics: Metrics
    fleet: Fleet
    store: StateStore
    bus: EventBus
    hibernator: Hibernator
    ledger: Ledger
    gpu_sampler: GpuSampler
    clock: Callable[[], float] = time.time
    started_at: float = field(default_factory=time.monotonic)
    shutting_down: bool = False
    scheduler: AsyncIOScheduler | None = None
    # Open voice sessions by id, each able to describe itself (the console lists them).
    sessions: dict[str, Any] = field(default_factory=dict)
    supervisor: Supervisor | None = None

    @classmethod
    def create(
        cls,
        config: AppConfig,
        secrets: Secrets,
        *,
        clock: Callable[[], float] = time.time,
        host: HostPower | None = None,
        **fleet_kwargs: Any,
    ) -> Runtime:
        metrics = Metrics()
        bus = EventBus()
        store = StateStore(config.state.dir / "orchestrator.db")
        admission = fleet_kwargs.pop("admission", None) or Admission(config)
        supervisor = Supervisor(config.state.dir / "processes")
        fleet = Fleet(
            config, metrics, clock=clock, admission=admission, supervisor=supervisor, **fleet_kwargs
        )
        fleet.pin_all(store.get("pins", []))
        wakes = WakeTimer(metrics.wake_finished, clock)

        def engine_state(name: str, state: str) -> None:
            wakes.engine_state(name, state)
            bus.publish("engine.state", engine=name, state=state)

        fleet.on_state = engine_state
        supervisor.listeners.append(
            lambda name, state: bus.publish("process.state", process=name, state=state.value)
        )
        known = admission.owners  # the orchestrator's own pid; managed servers join it
        admission.owners = lambda: {**known(), **supervisor.owned_pids()}
        ladder = Ladder(config.hibernation.thresholds(), last_activity=clock())
        hibernator = Hibernator.restore(
            ladder,
            store,
            actions=config.hibernation.actions,
            effects=fleet,
            host=host or host_power_from_config(config.host_power),
            bus=bus,
            clock=clock,
        )
        fleet.on_activity = hibernator.note_activity
        fleet.on_loaded = lambda name, role: hibernator.engine_loaded(role, name)
        gauges = GpuGauges(metrics.registry)
        gauges.set_reserve(admission.reserve_bytes)
        sampler = GpuSampler(
            admission.backend,
            config.hibernation.actions[hibernator.state].telemetry_interval_s,
            on_sample=lambda samples: gauges.observe(samples, admission.owners()),
        )
        hibernator.listeners.append(
            lambda _state, acts: sampler.set_interval(acts.telemetry_interval_s)
        )
        ledger = Ledger(config.state.dir / "orchestrator.db", config.costs)
        hibernator.record_listeners += [
            ledger.note_transition,
            metrics.hibernation_transition,
            wakes.transition,
        ]
        metrics.hibernation_restored(hibernator.state, _state_since(store, hibernator, clock))
        runtime = cls(
            config, secrets, metrics, fleet, store, bus, hibernator, ledger, sampler, clock=clock
        )
        runtime.supervisor = supervisor
        return runtime

    @property
    def hibernation_state(self) -> str:
        return self.hibernator.state.value

    def uptime(self) -> float:
        return time.monotonic() - self.started_at

    def start(self, *, tick: bool = True) -> None:
        """Begin serving: the hibernation writer, its scheduler tick, and engine preparation."""
        self.hibernator.start()
        self.ledger.host_on(self.clock())
        if self.gpu_sampler.sample_once():  # a GPU to watch: sample it at the state's pace
            self.gpu_sampler.start()
        if tick:
            self.scheduler = AsyncIOScheduler()
            self.scheduler.add_job(
                self.hibernator.tick,
                "interval",
                seconds=self.config.hibernation.tick_s,
                id="hibernation-tick",
                max_instances=1,
                coalesce=True,
            )
            self.scheduler.add_job(
                self._heartbeat, "interval", seconds=self.ledger.heartbeat_s, id="ledger-heartbeat"
            )
            self.scheduler.start()
        awake = self.hibernator.state in AWAKE_STATES
        if not awake:
            log.info("restored hibernation state %s: engines load on demand", self.hibernator.state)
        self.fleet.start(preload=awake)

    async def stop(self) -> None:
        self.shutting_down = True
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        await self.gpu_sampler.stop()
        await self.hibernator.stop()
        await self.fleet.stop()
        if self.supervisor is not None:
            await self.supervisor.stop_all()  # no managed child outlives the orchestrator
        await self._heartbeat()
        self.ledger.close()
        self.store.close()

    async def _heartbeat(self) -> None:
        """Mark the host as still running, so a crash bills at most one interval too little."""
        await asyncio.to_thread(self.ledger.heartbeat, self.clock())

    def credits(self) -> dict[str, Any]:
        return self.ledger.summary(self.clock())

    def pin(self, name: str, pinned: bool) -> None:
        self.fleet.pin(name, pinned)
        self.store.put("pins", self.fleet.pinned())
        self.bus.publish("engine.pin", engine=name, pinned=pinned)

    def session_deps(self) -> SessionDeps:
        """What a voice or duplex session may use of this server (never the runtime itself)."""
        return SessionDeps(
            fleet=self.fleet,
            settings=self.config.sessions,
            wake_timeout_s=self.config.hibernation.wake_timeout_s,
            activity=self.hibernator,
            registry=self.sessions,
            metrics=self.metrics,
            bus=self.bus,
        )

    def session_summaries(self) -> list[dict[str, Any]]:
        return [session.summary() for session in self.sessions.values()]

    def preload_engines(self) -> list[str]:
        """Engines an operator's wake brings up: the preloaded ones, in config order."""
        return [name for name, engine in self.config.engines.items() if engine.preload]

    async def still_loaded(self) -> list[dict[str, str]]:
        """The engines loaded now, each with why the idle state left it: pinned, in use, or a
        role the state keeps (``hibernate`` and ``status`` say so instead of leaving the
        operator to wonder why VRAM is still held)."""
        state = self.hibernator.ladder.state
        unloaded = self.hibernator.unloaded_roles(state)
        parked = self.hibernator.parked_roles(state)
        stayed = []
        for status in await self.fleet.statuses():
            if status.state != EngineState.LOADED:
                continue
            if status.pinned:
                why = "pinned"
            elif status.leases:
                why = f"in use ({status.leases} request(s) or session(s))"
            elif status.role in unloaded:
                why = f"{state.value} unloads {status.role}: it goes once its current use ends"
            elif status.role in parked:
                why = f"{state.value} parks {status.role}: it goes once its current use ends"
            else:
                why = f"{state.value} keeps {status.role} loaded"
            stayed.append({"engine": status.name, "role": str(status.role), "why": why})
        return stayed

    def hibernation_summary(self) -> dict[str, Any]:
        ladder = self.hibernator.ladder
        now = self.clock()
        next_at = ladder.next_step_at(now)
        return {
            "state": ladder.state.value,
            "idle_s": round(ladder.idle_seconds(now), 1),
            "next_step_at": next_at,
            "next_step_in_s": None if next_at is None else round(max(0.0, next_at - now), 1),
            "open_sessions": len(ladder.open_sessions),
            "keep_awake_until": ladder.keep_awake_until if ladder.keep_awake_until > now else None,
            "pinned": self.fleet.pinned(),
        }


def _state_since(store: StateStore, hibernator: Hibernator, clock: Callable[[], float]) -> float:
    """When the restored idle state began: its stored transition, else now."""
    last = store.transitions(limit=1)
    if last and last[0].target == hibernator.state:
        return last[0].at
    return clock()


RUNTIME = web.AppKey("runtime", Runtime)
# The API key a request authenticated with (per-key limits count by it).
API_KEY_USED = web.RequestKey("api_key", str)
