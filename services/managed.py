"""Engines that are separate servers: a process we supervise, or a URL someone else runs.

    runtime   load()                                  unload()
    -------   -------------------------------------   --------------------------------------
    managed   start the process under the supervisor  release the model through the server's
              and wait until it is ready, then        unload API if it has one, else stop the
              ``_attach()`` the model                 process (the only way to free it)
    remote    check that the server answers, then     release the model if the API can, else
              ``_attach()``                           just stop using it

A subclass whose server can park (vLLM's sleep mode) adds ``park()`` and sets the ``parked``
state; ``load`` then goes through ``_attach()`` again, which wakes the server, and ``unload``
of a parked engine is the same as of a loaded one.

The state table of ``services.base`` holds. While a managed process restarts after a crash the
engine reports ``loading`` (``failed`` once the supervisor gives up) and re-attaches its model
when the process is ready again. Policy (when to load, unload, stop) stays with the orchestrator:
an adapter only knows how.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar
from urllib.parse import urlsplit

import httpx

from services.base import (
    EngineHealth,
    EngineMemory,
    EngineSpec,
    EngineState,
    LoadReport,
    ModelArtifact,
    ProcessView,
    Role,
    Runtime,
    UnloadReport,
)
from services.errors import EngineError, EngineLoadError, EngineNotLoaded, ModelMissing
from services.process.managed_process import ManagedProcess, ProcessSpec, SupervisorError
from services.process.probes import Probe, TcpProbe
from services.process.resources import program_problem, tree_memory
from services.process.supervisor import ProcessState, Supervisor
from services.server_options import ServerOptions, parse_options
from services.tasks import TaskSet

log = logging.getLogger(__name__)

_RESTARTING = (ProcessState.STARTING, ProcessState.CRASHED, ProcessState.BACKOFF)


class ServerEngine(ABC):
    role: Role
    Options: ClassVar[type[ServerOptions]] = ServerOptions
    unload_stops_process: ClassVar[bool] = True  # False where the server can unload a model
    # What to do when the supervised program is not installed.
    install_hint: ClassVar[str] = "install the server, or set options.command to its path"

    def __init__(self, spec: EngineSpec, *, supervisor: Supervisor | None = None) -> None:
        self.name = spec.name
        self.spec = spec
        self.options = parse_options(self.Options, spec)
        self.runtime = Runtime.MANAGED if self.options.supervise else Runtime.REMOTE
        if self.options.supervise and not (self.options.command or self.default_command()):
            raise ValueError(f"engines.{self.name}.options.command: needed to supervise")
        self._supervisor = supervisor
        self._process: ManagedProcess | None = None
        self._state = EngineState.UNLOADED
        self._last_error: str | None = None
        self._hint = ""
        self._lock = asyncio.Lock()
        self._generation = 0  # the process start the model was attached in
        self._client: httpx.AsyncClient | None = None
        self._probed: tuple[float, str | EngineHealth | None] | None = None
        self._tasks = TaskSet(f"engine-{self.name}")
        # Told the engine's state after each re-attach to a restarted server (loaded or failed).
        self.state_listeners: list[Callable[[EngineState], object]] = []

    # -- what subclasses provide -------------------------------------------------------------

    @abstractmethod
    async def _attach(self) -> None:
        """The server is up: make the model resident (or check that it is served)."""

    async def _detach(self) -> None:
        """Release the model through the server's API; servers without one do nothing here."""
        return None

    @abstractmethod
    async def _probe(self) -> str | EngineHealth | None:
        """Ask the server whether it answers: None when it does, else what is wrong; or the
        engine's health as is when the server answers that it is not ready yet (loading its
        model) or cannot answer now for a known, harmless reason (busy with our request)."""

    def default_command(self) -> tuple[str, ...]:
        return ()

    def default_env(self) -> dict[str, str]:
        return {}

    def device_env(self) -> dict[str, str]:
        """A server placed on GPU N (``cuda:N``) sees that GPU only, as its cuda:0; NVML's
        numbering (PCI bus order) is the planner's, so CUDA is told to count the same way."""
        index = self.spec.device_index
        if index is None:
            return {}
        return {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": str(index)}

    def readiness_probe(self) -> Probe:
        return TcpProbe()

    def _measure(self) -> tuple[int | None, int | None]:
        """(RAM, VRAM) the loaded model holds; by default the supervised process tree's."""
        process = self._process
        pid = process.pid if process is not None else None
        return (None, None) if pid is None else tree_memory(pid)

    async def _check_residency(self) -> None:
        """Health's chance to notice that the server dropped the model on its own."""
        return None

    # -- plumbing for subclasses -------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self.options.url.rstrip("/")

    def missing_program(self) -> ModelMissing | None:
        """The supervised command's program when it is not installed: a clear ``missing`` state
        with how to get it, rather than a crash loop of a process that cannot start."""
        if not self.options.supervise:
            return None
        command = tuple(self.options.command) or self.default_command()
        if not command:
            return None
        program = command[0]
        where = program_problem(program)
        if where is None:
            return None
        return ModelMissing(
            f"the server program {program!r} is {where}", engine=self.name, hint=self.install_hint
        )

    def use_supervisor(self, supervisor: Supervisor) -> None:
        """Run the server process under the orchestrator's shared supervisor."""
        if self._process is not None:
            raise RuntimeError(f"{self.name}: the process was already created")
        self._supervisor = supervisor

    def process_spec(self) -> ProcessSpec:
        options = self.options
        parts = urlsplit(self.base_url)
        command = tuple(options.command) or self.default_command()
        if not command:
            raise ValueError(f"engines.{self.name}.options.command: needed to supervise")
        return ProcessSpec(
            name=self.name,
            command=command,
            env={**self.device_env(), **self.default_env(), **options.env},
            cwd=options.cwd,
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (443 if parts.scheme == "https" else 80),
            probe=self.readiness_probe(),
            ready_timeout_s=options.ready_timeout_s,
            stop_grace_s=options.stop_grace_s,
            restart=options.restart.policy(),
            log_lines=options.log_lines,
        )

    @property
    def process(self) -> ManagedProcess | None:
        """The supervised server process (None for a remote engine), created on first use."""
        if not self.options.supervise:
            return None
        if self._process is None:
            if self._supervisor is None:
                log.warning("%s: no shared supervisor: orphan recovery is off", self.name)
                self._supervisor = Supervisor(None)
            self._process = self._supervisor.process(self.process_spec())
            self._process.listeners.append(self._on_process_state)
        return self._process

    def client(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            options = self.options
            host = urlsplit(self.base_url).hostname or ""
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(options.timeout_s, connect=options.connect_timeout_s),
                trust_env=host not in ("127.0.0.1", "localhost", "::1"),
            )
        return self._client

    def headers(self) -> dict[str, str]:
        """The bearer key from the environment variable the config names (never the key)."""
        name = self.options.api_key_env
        if name is None:
            return {}
        key = os.environ.get(name)
        if not key:
            raise EngineLoadError(
                f"environment variable {name} (api_key_env) is not set", engine=self.name
            )
        return {"Authorization": f"Bearer {key}"}

    def _require_loaded(self) -> None:
        if self.state is not EngineState.LOADED:
            raise EngineNotLoaded(f"engine is {self.state}", engine=self.name)

    # -- the contract ------------------------------------------------------------------------

    @property
    def state(self) -> EngineState:
        process = self._process
        if self._state is not EngineState.LOADED or process is None:
            return self._state
        if process.state is ProcessState.READY:
            return EngineState.LOADED if process.starts == self._generation else EngineState.LOADING
        if process.state in _RESTARTING:
            return EngineState.LOADING
        if process.state is ProcessState.FAILED:
            return EngineState.FAILED
        return EngineState.UNLOADED

    @property
    def last_error(self) -> str | None:
        return self._last_error

    def artifacts(self) -> list[ModelArtifact]:
        return []  # the server fetches its own models

    async def load(self) -> LoadReport:
        async with self._lock:
            if self.state is EngineState.LOADED:
                return LoadReport(seconds=0.0, ram_delta_bytes=0, vram_delta_bytes=0)
            self._state, self._hint = EngineState.LOADING, ""
            started = time.perf_counter()
            try:
                await self._bring_up()
            except SupervisorError as exc:
                self._fail(f"server process: {exc.message}", _tail_hint(exc.last_lines))
                raise EngineLoadError(self._last_error or "", engine=self.name) from exc
            except ModelMissing as exc:
                self._state, self._last_error, self._hint = (
                    EngineState.MISSING,
                    exc.message,
                    exc.hint,
                )
                raise
            except EngineError as exc:
                self._fail(exc.message, f"is the server at {self.base_url} running?")
                raise
            except BaseException:
                self._state = EngineState.UNLOADED
                raise
            seconds = time.perf_counter() - started
            self._state, self._last_error = EngineState.LOADED, None
            ram, vram = self._measure()
            log.info("%s loaded in %.2fs (%s)", self.name, seconds, self.runtime)
            return LoadReport(seconds=seconds, ram_delta_bytes=ram or 0, vram_delta_bytes=vram)

    async def _bring_up(self) -> None:
        missing = self.missing_program()
        if missing is not None:
            raise missing
        process = self.process
        if process is not None:
            await process.ensure_ready()
            self._generation = process.starts
        await self._attach()  # for a remote server, also the first sign of whether it answers

    async def unload(self) -> UnloadReport:
        async with self._lock:
            process = self._process
            if self._state is EngineState.FAILED or self._state is EngineState.MISSING:
                if process is not None:
                    await process.stop()
                self._state = EngineState.UNLOADED
                return UnloadReport(seconds=0.0, ram_freed_bytes=0, vram_freed_bytes=0)
            if self._state not in (EngineState.LOADED, EngineState.PARKED):
                return UnloadReport(seconds=0.0, ram_freed_bytes=0, vram_freed_bytes=0)
            self._state = EngineState.UNLOADING
            started = time.perf_counter()
            ram, vram = self._measure()
            problem: str | None = None
            try:
                await self._detach()
            except EngineError as exc:
                problem = exc.message
            if process is not None and (self.unload_stops_process or problem is not None):
                await process.stop()  # stopping the server frees the model for certain
                problem = None
            self._state = EngineState.UNLOADED
            if problem is not None:
                self._last_error = f"unload not confirmed: {problem}"
                log.warning("%s: %s", self.name, self._last_error)
            await self._close_client()
            seconds = time.perf_counter() - started
            return UnloadReport(seconds=seconds, ram_freed_bytes=ram or 0, vram_freed_bytes=vram)

    async def stop_process(self) -> UnloadReport:
        """Unload, then stop the server process too (DORMANT); remote engines only unload."""
        report = await self.unload()
        async with self._lock:
            if self._process is not None:
                await self._process.stop()
        return report

    def process_view(self, lines: int = 20) -> ProcessView | None:
        return None if self._process is None else self._process.status(lines).view()

    async def health(self) -> EngineHealth:
        process = self._process
        if process is None and self.options.supervise:  # never started: nothing to probe yet
            missing = self.missing_program()
            if missing is not None:
                return EngineHealth(EngineState.MISSING, missing.message, missing.hint)
            detail = self._last_error or "server process not started; it starts on load"
            return EngineHealth(self.state, detail, self._hint)
        if process is not None and process.state is not ProcessState.READY:
            status = process.status(5)
            if process.state is ProcessState.FAILED:
                detail = f"server process failed: {status.detail}"
                return EngineHealth(EngineState.FAILED, detail, _tail_hint(status.last_lines))
            if process.state in _RESTARTING:
                detail = f"server process {process.state}: {status.detail}"
                return EngineHealth(self.state, detail, _tail_hint(status.last_lines))
            detail = self._last_error or "server process stopped; it starts on load"
            return EngineHealth(self.state, detail, self._hint)
        problem = await self._cached_probe()
        if isinstance(problem, EngineHealth):
            return problem
        if problem is not None:
            return EngineHealth(EngineState.FAILED, problem, f"is {self.base_url} running?")
        await self._check_residency()
        return EngineHealth(self.state, self._last_error or "", self._hint)

    def memory(self) -> EngineMemory:
        ram, vram = self._measure() if self.state is EngineState.LOADED else (None, None)
        return EngineMemory(
            device=self.spec.device,
            estimated_vram_bytes=self.spec.estimated_vram_bytes,
            estimated_ram_bytes=self.spec.estimated_ram_bytes,
            measured_vram_bytes=vram,
            measured_ram_bytes=ram,
        )

    # -- internals ---------------------------------------------------------------------------

    def _fail(self, message: str, hint: str) -> None:
        self._state, self._last_error, self._hint = EngineState.FAILED, message, hint
        log.warning("%s: %s", self.name, message)

    async def _cached_probe(self) -> str | EngineHealth | None:
        now = time.monotonic()
        if self._probed is None or now - self._probed[0] >= self.options.health_cache_s:
            self._probed = (now, await self._probe())
        return self._probed[1]

    def _on_process_state(self, state: ProcessState) -> None:
        process = self._process
        restarted = process is not None and process.starts != self._generation
        if state is ProcessState.READY and self._state is EngineState.LOADED and restarted:
            self._tasks.spawn("reattach", self._reattach())

    async def _reattach(self) -> None:
        """The server came back after a crash: make the model resident again."""
        async with self._lock:
            process = self._process
            if process is None or self._state is not EngineState.LOADED:
                return
            if process.state is not ProcessState.READY or process.starts == self._generation:
                return
            try:
                await self._attach()
            except EngineError as exc:
                self._fail(f"re-attaching after a restart: {exc.message}", "")
            else:
                self._generation = process.starts
                log.info("%s: model back after the server restarted", self.name)
        for listener in list(self.state_listeners):
            try:
                listener(self.state)
            except Exception:  # a listener's bug must not stop the engine
                log.exception("%s: state listener failed", self.name)

    async def _close_client(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _tail_hint(lines: tuple[str, ...]) -> str:
    return "last output: " + " | ".join(lines[-5:]) if lines else ""
