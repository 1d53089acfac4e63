"""What DORMANT does to the machine, and how it comes back.

``none`` leaves the host running (only the engines sleep). ``command`` runs operator-given shell
commands, e.g. a cloud CLI's instance stop or ``sudo shutdown -h now``, with a timeout, logging
their output. A stopped host cannot wake itself: the start command must be run by something that
stays up (a small always-on waker in front of the API; a later issue builds it). ``simulated``
records calls for tests and the simulator.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field
from typing import Protocol

from orchestrator.config import HostPowerConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PowerResult:
    ok: bool
    detail: str


class HostPower(Protocol):
    name: str

    async def power_off(self) -> PowerResult: ...

    async def power_on(self) -> PowerResult: ...


class NoHostPower:
    name = "none"

    async def power_off(self) -> PowerResult:
        return PowerResult(True, "host stays on (host_power.action = none)")

    async def power_on(self) -> PowerResult:
        return PowerResult(True, "host is on")


@dataclass
class SimulatedHost:
    name: str = "simulated"
    powered: bool = True
    calls: list[str] = field(default_factory=list)

    async def power_off(self) -> PowerResult:
        self.calls.append("off")
        self.powered = False
        return PowerResult(True, "simulated host powered off")

    async def power_on(self) -> PowerResult:
        self.calls.append("on")
        self.powered = True
        return PowerResult(True, "simulated host powered on")


class CommandHostPower:
    name = "command"

    def __init__(self, stop_command: str, start_command: str | None, timeout_s: float) -> None:
        self._stop = stop_command
        self._start = start_command
        self._timeout_s = timeout_s

    async def power_off(self) -> PowerResult:
        return await run_command(self._stop, self._timeout_s)

    async def power_on(self) -> PowerResult:
        if not self._start:
            return PowerResult(False, "no host_power.start_command configured")
        return await run_command(self._start, self._timeout_s)


async def run_command(command: str, timeout_s: float) -> PowerResult:
    """Run a shell command in its own process group; kill the group if it overruns."""
    proc = await asyncio.create_subprocess_shell(
        command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(timeout_s):
            output, _ = await proc.communicate()
    except TimeoutError:
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        log.error("host power command timed out after %.0f s: %s", timeout_s, command)
        return PowerResult(False, f"timed out after {timeout_s:.0f} s")
    text = output.decode(errors="replace").strip()
    for line in text.splitlines()[-20:]:
        log.info("host power> %s", line)
    if proc.returncode != 0:
        return PowerResult(False, f"exit status {proc.returncode}: {text[-300:]}")
    return PowerResult(True, text[-300:] or "done")


def host_power_from_config(config: HostPowerConfig) -> HostPower:
    if config.action == "command":
        assert config.stop_command is not None  # validated in config
        return CommandHostPower(config.stop_command, config.start_command, config.timeout_s)
    if config.action == "simulated":
        return SimulatedHost()
    return NoHostPower()
