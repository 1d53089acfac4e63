"""A fake engine at the Engine interface, for testing fleet and hibernation logic fast.

It keeps the contract's state table, yields to the event loop inside load and unload (so
concurrent callers really interleave), can be told to fail or to hold a load until a test
releases it, and checks the invariant that matters most: it is never unloaded while a request
is using it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from orchestrator.app.runtime import Runtime as AppRuntime
from orchestrator.config import AppConfig, load_config
from orchestrator.config.secrets import Secrets
from orchestrator.hibernation.host_power import SimulatedHost
from services.base import (
    EngineHealth,
    EngineMemory,
    EngineState,
    LoadReport,
    ModelArtifact,
    ParkReport,
    Role,
    Runtime,
    UnloadReport,
)
from services.errors import EngineLoadError, EngineNotLoaded


class FakeEngine:
    runtime = Runtime.IN_PROCESS

    def __init__(self, name: str, role: Role, *, steps: int = 3, failures: int = 0) -> None:
        self.name = name
        self.role = role
        self._state = EngineState.UNLOADED
        self._steps = steps
        self._failures_left = failures
        self._lock = asyncio.Lock()
        self.in_use = 0
        self.loads = 0
        self.unloads = 0
        self.violations: list[str] = []
        self.loading = asyncio.Event()  # set when a load begins
        self.hold: asyncio.Event | None = None  # when set to an event, a load waits for it

    @property
    def state(self) -> EngineState:
        return self._state

    @property
    def last_error(self) -> str | None:
        return None

    def artifacts(self) -> list[ModelArtifact]:
        return []

    async def load(self) -> LoadReport:
        async with self._lock:
            if self._state is EngineState.LOADED:
                return LoadReport(0.0, 0, 0)
            self._state = EngineState.LOADING
            self.loading.set()
            if self.hold is not None:
                await self.hold.wait()
            for _ in range(self._steps):
                await asyncio.sleep(0)
            if self._failures_left:
                self._failures_left -= 1
                self._state = EngineState.FAILED
                raise EngineLoadError("simulated load failure", engine=self.name)
            self._state = EngineState.LOADED
            self.loads += 1
            return LoadReport(0.01, 1000, None)

    async def unload(self) -> UnloadReport:
        async with self._lock:
            if self.in_use:
                self.violations.append(
                    f"{self.name} unloaded while {self.in_use} request(s) used it"
                )
            if self._state not in (EngineState.LOADED, EngineState.FAILED):
                return UnloadReport(0.0, 0, 0)
            self._state = EngineState.UNLOADING
            await asyncio.sleep(0)
            self._state = EngineState.UNLOADED
            self.unloads += 1
            return UnloadReport(0.01, 1000, None)

    async def health(self) -> EngineHealth:
        return EngineHealth(self._state)

    def memory(self) -> EngineMemory:
        return EngineMemory("cpu", None, 1000, None, None)

    async def use(self, steps: int) -> None:
        """Stand in for a role call: the engine must stay loaded throughout."""
        if self._state is not EngineState.LOADED:
            raise EngineNotLoaded(f"engine is {self._state}", engine=self.name)
        self.in_use += 1
        try:
            for _ in range(steps):
                await asyncio.sleep(0)
                if self._state is not EngineState.LOADED:
                    self.violations.append(f"{self.name} became {self._state} while in use")
        finally:
            self.in_use -= 1


class ParkingFakeEngine(FakeEngine):
    """A fake with a parked state: ``park`` keeps its (pretend) weights, ``load`` resumes."""

    KEPT = 5000

    def __init__(self, name: str, role: Role, **kwargs: int) -> None:
        super().__init__(name, role, **kwargs)
        self.parks = 0
        self.resumes = 0

    async def park(self) -> ParkReport:
        async with self._lock:
            if self.in_use:
                self.violations.append(f"{self.name} parked while {self.in_use} request(s) used it")
            if self._state is EngineState.LOADED:
                await asyncio.sleep(0)
                self._state = EngineState.PARKED
                self.parks += 1
            return ParkReport(0.001, self.KEPT, 0, None)

    async def load(self) -> LoadReport:
        async with self._lock:
            if self._state is not EngineState.PARKED:
                resumed = False
            else:
                self._state = EngineState.LOADING
                await asyncio.sleep(0)
                self._state = EngineState.LOADED
                self.resumes += 1
                resumed = True
        return LoadReport(0.001, 0, None, resumed=True) if resumed else await super().load()

    async def unload(self) -> UnloadReport:
        if self._state is EngineState.PARKED:
            self._state = EngineState.LOADED  # unloads as a loaded engine does
        return await super().unload()

    def memory(self) -> EngineMemory:
        parked = self.KEPT if self._state is EngineState.PARKED else None
        return EngineMemory("cpu", None, 1000, None, None, parked_ram_bytes=parked)


class FakeClock:
    """Seconds since the epoch that only move when a test says so."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


# -- a runtime whose engines are all fakes ----------------------------------------------------

ENGINES = {"asr": Role.ASR, "tts": Role.TTS, "asr2": Role.ASR}


def fake_config(tmp: Path) -> AppConfig:
    path = tmp / "fake.toml"
    path.write_text(
        f"""
profile = "cpu"
[state]
dir = "{tmp}"
[models]
auto_download = false
[engines.asr2]
role = "asr"
adapter = "faster-whisper"
model = "/nonexistent"
"""
    )
    return load_config(config_file=path, environ={})


def fake_runtime(
    tmp: Path,
    clock: FakeClock,
    failures: dict[str, int],
    make: Callable[..., AppRuntime] = AppRuntime.create,
) -> AppRuntime:
    """Every configured engine replaced by a fake; the real adapters are never built. ``make``
    is ``Runtime.create``, or the ``make_runtime`` fixture where the test leaves stopping to it."""
    engines = {
        name: FakeEngine(name, role, steps=2, failures=failures.get(name, 0))
        for name, role in ENGINES.items()
    }
    secrets = Secrets(api_keys=("k",), console_password="p")
    return make(
        fake_config(tmp), secrets=secrets, clock=clock, host=SimulatedHost(), engines=engines
    )
