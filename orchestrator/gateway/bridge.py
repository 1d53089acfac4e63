"""The bridge: an orchestrator server on CPU engines beside the gateway, kept warm.

While the GPU host boots (minutes), the bridge answers (``handover.py`` for Realtime sessions,
``proxy.py`` for REST). It runs as its own process, ``python -m orchestrator serve`` with
``[gateway.bridge] serve_args``, so the gateway's process never imports an engine or torch:
the ``local`` provider's supervision (own process group, pidfile, SIGTERM then SIGKILL) with
its own name, the gateway's host key as its only key, listening on ``url`` (loopback).

It is started with the gateway and watched every ``poll_s``: ready while its
``/health/ready`` answers; restarted (after a backoff that doubles up to a minute) if it
exits. Stopped with the gateway: unlike the host, it is the gateway's own part.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import psutil

from orchestrator.config.gateway import BridgeConfig, LocalProvider
from orchestrator.gateway.errors import HostStartFailed
from orchestrator.gateway.providers.base import PowerState
from orchestrator.gateway.providers.local import LocalHost
from orchestrator.gateway.readiness import HttpReadyProbe, ReadyProbe
from services.tasks import TaskSet

log = logging.getLogger(__name__)

NAME = "gateway-bridge"
RESTART_MAX_S = 60.0


class BridgeProcess:
    """A ``Bridge`` (``gate.py``) that is a supervised server process."""

    def __init__(
        self,
        config: BridgeConfig,
        state_dir: Path,
        host_key: str,
        *,
        poll_s: float = 1.0,
        probe: ReadyProbe | None = None,
    ) -> None:
        server = LocalProvider(
            serve_args=config.serve_args,
            url=config.url,
            env=config.env,
            stop_timeout_s=config.stop_timeout_s,
        )
        self.after_s = config.bridge_after_s
        self._url = config.url
        self._server = LocalHost(server, state_dir, host_key, name=NAME)
        self._probe = probe or HttpReadyProbe(host_key)
        self._owns_probe = probe is None
        self._poll_s = poll_s
        self._ready = False
        self.became_ready = asyncio.Event()
        self._tasks = TaskSet("gateway-bridge")

    def url(self) -> str | None:
        return self._url if self._ready else None

    def rss_bytes(self) -> int | None:
        """The resident memory of the bridge's process tree (what the gateway VM must hold)."""
        pid = self._server.pid()
        if pid is None:
            return None
        try:
            root = psutil.Process(pid)
            return sum(p.memory_info().rss for p in (root, *root.children(recursive=True)))
        except psutil.Error:
            return None

    async def start(self) -> None:
        """Spawn it (or adopt the one a previous gateway left) and watch it; returns at once,
        the bridge is ready when its engines are."""
        self._tasks.spawn("bridge-watch", self._watch())

    async def stop(self) -> None:
        await self._tasks.cancel_all()
        self._ready = False
        await self._server.stop()
        await self._server.close()
        if self._owns_probe and isinstance(self._probe, HttpReadyProbe):
            await self._probe.close()

    async def _watch(self) -> None:
        backoff_s = self._poll_s
        while True:
            view = await self._server.status()
            if view.state is not PowerState.RUNNING:
                self._ready = False
                if view.detail:
                    log.warning("the bridge is down (%s); starting it", view.detail)
                try:
                    await self._server.start()
                except HostStartFailed as exc:
                    log.error("the bridge cannot start: %s", exc)
                    await asyncio.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, RESTART_MAX_S)
                    continue
            ready = await self._probe(self._url)
            if ready and not self._ready:
                log.info("the bridge is ready at %s", self._url)
                self.became_ready.set()
                backoff_s = self._poll_s
            self._ready = ready
            await asyncio.sleep(self._poll_s)
