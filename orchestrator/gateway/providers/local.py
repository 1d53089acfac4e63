"""The ``local`` provider: the "host" is an orchestrator server process on this machine.

For development, demos and the gateway's end-to-end tests: starting the host spawns
``python -m orchestrator serve`` in its own process group (the gateway's host key as its only API
key, known as a gateway's, so sessions are counted per client), stopping it sends SIGTERM to
the group, then SIGKILL. Like a VM, the server outlives the gateway: a pidfile in the state
directory lets a restarted gateway find it (checked by start time and command line, so a reused
pid is never mistaken for it), and closing the provider leaves it running. The server's output
goes to ``<state.dir>/gateway-host.log``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import psutil

from orchestrator.config.gateway import LocalProvider
from orchestrator.gateway.errors import HostStartFailed
from orchestrator.gateway.providers.base import HostView, PowerState
from services.process import pidfiles

NAME = "gateway-host"


class LocalHost:
    name = "local"

    def __init__(
        self, config: LocalProvider, state_dir: Path, host_key: str, *, name: str = NAME
    ) -> None:
        self._config = config
        self._name = name  # its pidfile and log (the bridge is another one: ``bridge.py``)
        self._dir = state_dir
        self._host_key = host_key
        self._child: asyncio.subprocess.Process | None = None
        self._exit: str = ""

    def command(self) -> tuple[str, ...]:
        return (sys.executable, "-m", "orchestrator", "serve", *self._config.serve_args)

    async def status(self) -> HostView:
        process = self._running()
        if process is not None:
            return HostView(PowerState.RUNNING, self._config.url, self._instance(process.pid))
        return HostView(PowerState.STOPPED, None, "local", self._exit)

    async def start(self) -> HostView:
        if self._running() is not None:
            return await self.status()
        self._dir.mkdir(parents=True, exist_ok=True)
        keys = {"VO_API_KEYS": self._host_key, "VO_GATEWAY_KEYS": self._host_key}
        env = {**os.environ, **self._config.env, **keys}
        env.pop("VO_API_KEY_FILE", None)
        log_path = self._dir / f"{self._name}.log"
        with log_path.open("ab") as log_file:
            try:
                self._child = await asyncio.create_subprocess_exec(
                    *self.command(),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=log_file,
                    env=env,
                    start_new_session=True,
                )
            except OSError as exc:
                raise HostStartFailed(f"cannot run {self.command()[0]}: {exc}") from exc
        pidfiles.write(self._dir, pidfiles.PidRecord.for_child(self._name, self._child.pid, None))
        self._exit = ""
        return HostView(PowerState.RUNNING, self._config.url, self._instance(self._child.pid))

    async def stop(self) -> HostView:
        process = self._running()
        if process is None:
            pidfiles.remove(self._dir, self._name)
            return await self.status()
        pgid = os.getpgid(process.pid)
        pidfiles.signal_group(pgid, signal.SIGTERM)
        if not await self._gone(process, self._config.stop_timeout_s):
            pidfiles.signal_group(pgid, signal.SIGKILL)
            await self._gone(process, 10.0)
        pidfiles.signal_group(pgid, signal.SIGKILL)  # whatever else it left in its group
        pidfiles.remove(self._dir, self._name)
        self._exit = "stopped by the gateway"
        return await self.status()

    async def close(self) -> None:
        """The server stays up, as a VM would; a restarted gateway finds it by its pidfile."""
        self._child = None

    def _running(self) -> psutil.Process | None:
        """The server if it still runs: our child, or the one a previous gateway started."""
        if self._child is not None and self._child.returncode is not None:
            self._exit = f"the server exited with status {self._child.returncode}"
            self._child = None
        for _path, record in pidfiles.read_all(self._dir):
            if record is not None and record.name == self._name:
                process = pidfiles.live_child(record)
                if process is not None:
                    return process
                if not self._exit:
                    self._exit = "the server is gone"
        return None

    async def _gone(self, process: psutil.Process, timeout_s: float) -> bool:
        if self._child is not None and self._child.pid == process.pid:
            try:
                await asyncio.wait_for(self._child.wait(), timeout_s)
            except TimeoutError:
                return False
            return True
        return await pidfiles.wait_gone(process, timeout_s)  # not our child: cannot reap it

    def pid(self) -> int | None:
        """The server's pid while it runs."""
        process = self._running()
        return None if process is None else process.pid

    def _instance(self, pid: int) -> str:
        return f"local pid {pid}"
