"""The fleet owns the engines: it prepares, loads, leases and unloads them, and keeps stats.

Every request takes a *lease* on the engines it uses. An engine with a lease, or with a request
waiting for one, is never unloaded: the check and the unload happen under the engine's gate, the
same lock a lease is granted under. Loads are single-flight (concurrent requests for a cold
engine share one load task) and independent engines load in parallel. A request whose engines
do not come up within its timeout gets ``WakeTimeout``; the load goes on for the next request.

Beside it: ``records`` (what the fleet keeps per engine), ``status`` (the engines as health
checks and the console see them), ``vram`` (the fleet as the VRAM admission sees it) and
``downloads`` (model files fetched before a first load), ``leases`` (granting them),
``release`` (parking, and stopping server processes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from orchestrator.config import AppConfig, EngineConfig
from orchestrator.core.metrics import Metrics
from orchestrator.fleet import leases, release
from orchestrator.fleet.downloads import fetch_missing
from orchestrator.fleet.errors import UnknownEngine
from orchestrator.fleet.records import EngineRecord, LoadSpan, ParkOutcome, UnloadOutcome, spec_for
from orchestrator.fleet.status import EngineStatus, engine_status, memory_snapshot
from orchestrator.fleet.vram import VramAdmission
from orchestrator.gpu.admission import Admission
from orchestrator.gpu.catalog import Catalog, catalog_files, load_catalog, planned_sessions
from orchestrator.gpu.host_ram import HostRam
from orchestrator.gpu.placement import MIB
from services.base import (
    Engine,
    EngineState,
    LoadReport,
    ProcessBacked,
    Role,
    Runtime,
    UnloadReport,
)
from services.errors import EngineError
from services.process.supervisor import Supervisor
from services.registry import create_engine, supervise
from services.tasks import TaskSet

log = logging.getLogger(__name__)


class Fleet:
    def __init__(
        self,
        config: AppConfig,
        metrics: Metrics,
        *,
        engines: dict[str, Engine] | None = None,
        clock: Callable[[], float] = time.time,
        admission: Admission | None = None,
        supervisor: Supervisor | None = None,
        host_ram: Callable[[], HostRam] = release.read_host_ram,
    ) -> None:
        self._config = config
        self.admission = admission
        self._metrics = metrics
        self._clock = clock
        self._supervisor = supervisor  # runs the server processes of managed engines
        self._tasks = TaskSet("fleet")
        self._preparing: list[asyncio.Task[None]] = []
        self._records: dict[str, EngineRecord] = {}
        self._vram = (
            None if admission is None else VramAdmission(admission, self._records, self._evict)
        )
        self.on_activity: Callable[[], None] = lambda: None
        # Told ``(engine, state)`` after every load, unload and failure (the console's live view).
        self.on_state: Callable[[str, str], object] = lambda _name, _state: None
        # Told ``(engine, role)`` when a load completes (the hibernator may unload it again).
        self.on_loaded: Callable[[str, Role], object] = lambda _name, _role: None
        # The catalog the VRAM plan sizes engines by; adapters are told its session counts.
        self._catalog: Catalog = (
            admission.catalog
            if admission is not None
            else load_catalog(catalog_files(config.gpu.catalog))
        )
        for name, engine_config in config.engines.items():
            engine = (engines or {}).get(name) or self._create(name, engine_config)
            self._records[name] = EngineRecord(engine_config, engine)
            self._adopt(name, engine)
        reserve = int(config.gpu.host_reserve_mb * MIB)
        self.host_room = release.HostRoom(self._records, self._catalog, reserve, host_ram)

    def _create(self, name: str, config: EngineConfig) -> Engine:
        sessions = planned_sessions(config, self._catalog)
        return create_engine(
            config.adapter, spec_for(name, config, self._config.models.dir, sessions)
        )

    def _adopt(self, name: str, engine: Engine) -> None:
        """Wire an engine into the fleet: its server process under the shared supervisor, and
        its state followed (a server that came back re-attaches alone)."""
        if self._supervisor is not None:
            supervise(engine, self._supervisor)
        if isinstance(engine, ProcessBacked):
            engine.state_listeners.append(self._state_follower(name))

    @property
    def names(self) -> list[str]:
        return list(self._records)

    def engine(self, name: str) -> Engine:
        return self._record(name).engine

    def names_for(self, roles: Iterable[Role]) -> list[str]:
        wanted = set(roles)
        return [name for name, rec in self._records.items() if rec.config.role in wanted]

    def _record(self, name: str) -> EngineRecord:
        try:
            return self._records[name]
        except KeyError:
            raise UnknownEngine(name) from None

    # -- start-up ----------------------------------------------------------------------------

    def start(self, *, preload: bool = True) -> None:
        """Download what is missing and (if ``preload``) load engines, in the background."""
        self._preparing = [
            self._tasks.spawn(f"prepare-{name}", self._prepare(name, preload))
            for name in self._records
        ]

    async def wait_prepared(self) -> None:
        """Wait until every engine ``start()`` began is downloaded and preloaded (or failed)."""
        await asyncio.gather(*self._preparing, return_exceptions=True)

    async def _prepare(self, name: str, preload: bool) -> None:
        record = self._records[name]
        if self._config.models.auto_download:
            await fetch_missing(name, record, self._config.models.dir)
        if preload and record.config.preload and record.engine.state is EngineState.UNLOADED:
            try:
                await self.load(name)
            except EngineError as exc:
                log.warning("%s", exc)

    # -- loading -----------------------------------------------------------------------------

    async def load(self, name: str, *, by_operator: bool = False) -> LoadReport:
        """Load one engine; concurrent callers share one load (single flight).

        A load that lands where the idle state keeps its role unloaded is undone (``on_loaded``),
        unless an operator asked for it: that one stays until the ladder's next transition."""
        record = self._record(name)
        if by_operator:
            record.operator_load = True
        if record.loading is None or record.loading.done():
            record.loading = self._tasks.spawn(f"load-{name}", self._load(name), awaited=True)
        return await asyncio.shield(record.loading)

    async def _load(self, name: str) -> LoadReport:
        record = self._records[name]
        started = time.perf_counter()  # spans measure real elapsed time, not the ladder's clock
        try:
            if self._vram is not None and not record.loaded:
                moved = await self._vram.admit(name)
                if moved is not None:
                    self._rebuild(name, moved)
            if record.engine.state is not EngineState.LOADED:
                self._publish_state(name, EngineState.LOADING.value)
            report = await record.engine.load()
        except EngineError:
            self._metrics.load_finished(name, time.perf_counter() - started, ok=False)
            self._publish_state(name)
            raise
        except asyncio.CancelledError:
            self._publish_state(name)
            raise
        self._publish_state(name)
        if record.operator_load:
            record.operator_load = False
        else:
            _tell(self.on_loaded, name, record.config.role)
        if report.resumed:  # copied back from host RAM: not a load, nor its VRAM measurement
            record.resumes += 1
            record.last_resume = report
            record.spans = [*record.spans[-9:], LoadSpan(started, time.perf_counter())]
        elif report.seconds > 0:
            if self._vram is not None:
                self._vram.loaded(record, report)
            record.loads += 1
            record.last_load = report
            record.spans = [*record.spans[-9:], LoadSpan(started, time.perf_counter())]
            self._metrics.load_finished(name, report.seconds, ok=True)
        return report

    def _state_follower(self, name: str) -> Callable[[EngineState], None]:
        return lambda _state: self._publish_state(name)

    def _publish_state(self, name: str, state: str | None = None) -> None:
        _tell(self.on_state, name, state or self._records[name].engine.state.value)

    async def _evict(self, name: str) -> bool:
        return (await self.unload(name)).unloaded

    def _rebuild(self, name: str, why: str) -> None:
        """Rebuild an engine where the planner moved it (the CPU, or GPU N: ``vram`` says)."""
        record = self._records[name]
        record.engine = self._create(name, record.device_config())
        self._adopt(name, record.engine)
        log.warning("%s: %s", name, why)

    async def vram_budget(self) -> dict[str, Any] | None:
        return None if self._vram is None else await self._vram.budget()

    def prewarm(self, names: Sequence[str]) -> None:
        """Start loading (or resuming) engines a session may use, without waiting for them."""
        for name in names:
            if self._record(name).engine.state in (EngineState.UNLOADED, EngineState.PARKED):
                self._tasks.spawn(f"prewarm-{name}", self._quiet_load(name))

    async def _quiet_load(self, name: str) -> None:
        try:
            await self.load(name)
        except EngineError as exc:
            log.warning("pre-warm of %s failed: %s", name, exc)

    # -- leases ------------------------------------------------------------------------------

    @asynccontextmanager
    async def lease(
        self,
        names: Sequence[str],
        *,
        timeout_s: float | None = None,
        on_waking: Callable[[list[str]], Any] | None = None,
    ) -> AsyncIterator[dict[str, Engine]]:
        """Hold ``names`` loaded for the body of a ``with``; they are never unloaded meanwhile.

        Engines that are not loaded are loaded in parallel, started in the order given (the
        order the request needs them in). ``on_waking`` hears which engines must load first.
        """
        records = [self._record(name) for name in names]
        granted: list[EngineRecord] = []
        self.on_activity()
        try:
            cold = [n for n, r in zip(names, records, strict=True) if not r.loaded]
            if cold and on_waking is not None:
                on_waking(cold)
            await leases.grant_all(list(names), records, granted, timeout_s, self.load)
            now = self._clock()
            for record in records:
                record.last_used = now
            yield {name: rec.engine for name, rec in zip(names, records, strict=True)}
        finally:
            for record in granted:
                async with record.gate:
                    record.leases -= 1
                    record.gate.notify_all()
            self.on_activity()

    # -- unloading ---------------------------------------------------------------------------

    async def unload(
        self, name: str, *, wait_for_leases: bool = False, respect_pin: bool = True
    ) -> UnloadOutcome:
        """Unload one engine unless it is leased (then skip, or wait) or pinned."""
        record = self._record(name)
        async with record.gate:
            if respect_pin and record.pinned:
                return UnloadOutcome(name, False, "pinned")
            if wait_for_leases:
                await record.gate.wait_for(lambda: record.leases == 0)
            elif record.held:
                busy = record.leases + record.waiting
                return UnloadOutcome(name, False, f"in use by {busy} request(s)")
            if record.engine.state not in (
                EngineState.LOADED,
                EngineState.PARKED,
                EngineState.FAILED,
            ):
                return UnloadOutcome(name, False, f"already {record.engine.state}")
            report = await record.engine.unload()
        self._unloaded(name, report)
        return UnloadOutcome(name, True, report=report)

    def _unloaded(self, name: str, report: UnloadReport | None) -> None:
        self._publish_state(name)
        if report is not None and report.seconds > 0:
            self._records[name].last_unload = report
            self._metrics.unload_finished(name, report.seconds)

    async def unload_roles(self, roles: Iterable[Role]) -> list[UnloadOutcome]:
        names = self.names_for(roles)
        return list(await asyncio.gather(*(self.unload(name) for name in names)))

    async def park(self, name: str, *, respect_pin: bool = True) -> ParkOutcome:
        """Park one engine unless it is leased or pinned; one that cannot park (or whose weights
        host RAM cannot hold) is unloaded instead (``release.park``)."""
        record = self._record(name)
        outcome = await release.park(name, record, self.host_room, respect_pin=respect_pin)
        if outcome.done:
            self._unloaded(name, outcome.unloaded)
        return outcome

    async def park_roles(self, roles: Iterable[Role]) -> list[ParkOutcome]:
        names = self.names_for(roles)
        return list(await asyncio.gather(*(self.park(name) for name in names)))

    async def stop_managed(self) -> list[UnloadOutcome]:
        """Stop the server processes of managed engines (DORMANT), loaded or not: a server
        whose model was unloaded earlier (Ollama's) still holds RAM and a CUDA context."""
        names = [n for n, r in self._records.items() if r.engine.runtime is Runtime.MANAGED]
        return list(await asyncio.gather(*(self._stop_process(name) for name in names)))

    async def _stop_process(self, name: str) -> UnloadOutcome:
        outcome = await release.stop_process(name, self._record(name))
        if outcome is None:  # no server process: an unload is all there is
            return await self.unload(name)
        self._unloaded(name, outcome.report)
        return outcome

    def pin(self, name: str, pinned: bool) -> None:
        self._record(name).pinned = pinned

    def pin_all(self, names: list[str]) -> None:
        """Restore saved pins, ignoring engines no longer configured."""
        for name in names:
            if name in self._records:
                self._records[name].pinned = True

    def pinned(self) -> list[str]:
        return [name for name, rec in self._records.items() if rec.pinned]

    def load_spans(self, name: str) -> list[LoadSpan]:
        return list(self._record(name).spans)

    async def stop(self) -> None:
        """Cancel background work and unload every engine: the process leaves nothing behind."""
        await self._tasks.cancel_all()
        results = await asyncio.gather(
            *(self.unload(n, respect_pin=False) for n in self._records), return_exceptions=True
        )
        for name, result in zip(self._records, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("unloading %s at shutdown failed: %s", name, result)

    # -- what the outside sees ---------------------------------------------------------------

    async def memory_snapshot(self) -> dict[str, Any]:
        return await memory_snapshot(self._records)

    async def statuses(self) -> list[EngineStatus]:
        return list(await asyncio.gather(*(self.status(name) for name in self._records)))

    async def status(self, name: str) -> EngineStatus:
        return await engine_status(name, self._record(name))


def _tell(listener: Callable[..., object], *args: Any) -> None:
    try:
        listener(*args)
    except Exception:  # a listener's bug must not break a load or an unload
        log.exception("fleet listener %r failed", listener)
