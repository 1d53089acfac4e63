"""A managed engine for the console's tests: fake model, real server process.

The model is ``tests.fakes.FakeEngine``'s (instant); the process is real, under the runtime's
supervisor, so its output goes through the same ring, followers and pages as Ollama's would.
The child prints a few lines at start and one more line each time it gets SIGUSR1, so a test
decides when new output appears instead of waiting for a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable

from services.base import EngineState, LoadReport, ProcessView, Role, Runtime, UnloadReport
from services.process.supervisor import ProcessSpec, Supervisor
from tests.fakes import FakeEngine

CHILD = """
import signal, sys
pokes = 0
def poke(*_):
    global pokes
    pokes += 1
    print(f"poked {pokes}", flush=True)
signal.signal(signal.SIGUSR1, poke)
print("fake llm server: loading tiny model", flush=True)
print("fake llm server: warning: no GPU, running on CPU", file=sys.stderr, flush=True)
print("fake llm server: listening", flush=True)
while True:
    signal.pause()
"""

TOML = """
[engines.llm]
role = "llm"
adapter = "ollama"
model = "tiny-llm"
estimate_vram_mb = 5200
estimate_ram_mb = 600
"""


class ManagedFakeEngine(FakeEngine):
    runtime = Runtime.MANAGED

    def __init__(self, name: str, role: Role = Role.LLM) -> None:
        super().__init__(name, role)
        self.supervisor: Supervisor | None = None
        self.state_listeners: list[Callable[[EngineState], object]] = []

    def spec(self) -> ProcessSpec:
        return ProcessSpec(name=self.name, command=(sys.executable, "-u", "-c", CHILD))

    async def load(self) -> LoadReport:
        assert self.supervisor is not None, "give it the runtime's supervisor"
        process = self.supervisor.process(self.spec())
        before = process.log.total
        await process.ensure_ready()
        async with asyncio.timeout(10), contextlib.aclosing(process.log.follow()) as lines:
            async for line in lines:  # "listening": its SIGUSR1 handler is in place
                if line.seq > before and line.text.endswith("listening"):
                    break
        return await super().load()

    async def unload(self) -> UnloadReport:
        report = await super().unload()
        process = self.supervisor.get(self.name) if self.supervisor else None
        if process is not None:
            await process.stop()
        return report

    async def stop_process(self) -> UnloadReport:
        return await self.unload()

    def process_view(self, lines: int = 20) -> ProcessView | None:
        """What ``services.managed.ServerEngine`` shows, from the same supervisor status."""
        process = self.supervisor.get(self.name) if self.supervisor else None
        if process is None:
            return None
        return process.status(lines).view()

    def poke(self) -> None:
        """Make the running child print one more line."""
        process = self.supervisor.get(self.name) if self.supervisor else None
        assert process is not None and process.pid is not None, "the process is not running"
        os.kill(process.pid, signal.SIGUSR1)
