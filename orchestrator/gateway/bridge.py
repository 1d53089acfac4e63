"""The bridge: an orchestrator server on CPU engines beside the gateway, kept warm.

While the GPU host boots (minutes), the bridge answers (``handover.py`` for Realtime sessions,
``proxy.py`` for REST). It runs as its own process, ``python -m orchestrator serve`` with
``[gateway.bridge] serve_args``, so the gateway's process never imports an engine or torch:
the ``local`` provider's supervision (own process group, pidfile, SIGTERM then SIGKILL) with
its own name, the gateway's host key as its only key, listening on ``url`` (loopback).

It is started with the gateway and watched every ``poll_s``; restarted (after a backoff that
doubles up to a minute) if it exits. Stopped with the gateway: unlike the host, it is the
gateway's own part.

Its engines are loaded before the first student comes, and stay loaded:

- **ready** means its ``/health/ready`` answers (the server is up, its route loadable) *and* a
  warm-up Realtime session opened on it: the server says ``session.created`` only once it has
  leased, so loaded, every engine a session uses (whatever its config preloads, and whatever
  idle state it restored). Until then no session or request is bridged, so none pays a load;
  a warm-up that fails (an engine that cannot load) is logged and tried again each poll.
  A bridge that stopped answering, or was restarted, is warmed up again;
- its idle ladder never unloads or parks (``BRIDGE_ENV``): a bridge is idle most of the day, and the
  always-on VM is paid for whether its models are loaded or not; nor does its DORMANT stop
  engine processes or power anything off (the VM is the gateway's). ``[gateway.bridge] env``
  may still say otherwise, key by key.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import psutil

from orchestrator.config.gateway import BridgeConfig, LocalProvider
from orchestrator.gateway.errors import HostStartFailed
from orchestrator.gateway.providers.base import PowerState
from orchestrator.gateway.providers.local import LocalHost
from orchestrator.gateway.readiness import HttpReadyProbe, ReadyProbe
from orchestrator.gateway.upstream import CLIENT, ws_url
from services.tasks import TaskSet

log = logging.getLogger(__name__)

NAME = "gateway-bridge"
RESTART_MAX_S = 60.0
WARM_UP_S = 600.0  # CPU engines load in seconds to a minute; this bounds a wedged warm-up
WARM_UP_CLIENT = "gateway-bridge-warm-up"  # who the warm-up session is, to the bridge's limits
BRIDGE_ENV = {
    **{
        f"VO__HIBERNATION__ACTIONS__{state}__{roles}": "[]"
        for state in ("COOL", "COLD", "DORMANT")
        for roles in ("UNLOAD_ROLES", "PARK_ROLES")
    },
    "VO__HIBERNATION__ACTIONS__DORMANT__STOP_PROCESSES": "false",
    "VO__HIBERNATION__ACTIONS__DORMANT__HOST_POWER_OFF": "false",
}
"""The bridge server's configuration under the operator's (environment keys, ``loading.py``):
its idle ladder keeps every engine loaded and every process running."""


def bridge_env(config: BridgeConfig, state_dir: Path) -> dict[str, str]:
    """The bridge server's environment: ``BRIDGE_ENV``, then where it listens (``url``'s host
    and port) and a state folder of its own (beside a ``local`` host's, never shared), then
    ``[gateway.bridge] env``, which wins. Its console stays where its config puts it (8766 by
    default: set another port when a ``local`` host runs on the same machine)."""
    url = urlsplit(str(config.url))
    placed = {
        "VO__SERVER__API_HOST": url.hostname or "127.0.0.1",
        "VO__SERVER__API_PORT": str(url.port or 80),
        "VO__STATE__DIR": str(state_dir / "bridge"),
    }
    return {**BRIDGE_ENV, **placed, **config.env}


class NotWarm(Exception):
    """The bridge did not open a session: why, in words."""


async def warm_up(http: aiohttp.ClientSession, url: str, host_key: str) -> None:
    """Open a Realtime session on the server at ``url`` and close it once it says
    ``session.created`` (by then it leased every engine a session uses: they are loaded);
    ``NotWarm`` when it said an error or ended first."""
    headers = {"Authorization": f"Bearer {host_key}", CLIENT: WARM_UP_CLIENT}
    try:
        async with (
            asyncio.timeout(WARM_UP_S),
            http.ws_connect(ws_url(url, "/v1/realtime"), headers=headers) as ws,
        ):
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    break
                event = json.loads(message.data)
                kind = event.get("type") if isinstance(event, dict) else None
                if kind == "session.created":
                    return
                if kind == "error":
                    error = event.get("error") or {}
                    raise NotWarm(f"{error.get('code')}: {error.get('message')}")
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise NotWarm(f"{type(exc).__name__}: {exc}") from exc
    raise NotWarm("the session ended before it was created")


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
            env=bridge_env(config, state_dir),
            stop_timeout_s=config.stop_timeout_s,
        )
        self.after_s = config.bridge_after_s
        self._url = config.url
        self._host_key = host_key
        self._server = LocalHost(server, state_dir, host_key, name=NAME)
        self._probe = probe or HttpReadyProbe(host_key)
        self._owns_probe = probe is None
        self._poll_s = poll_s
        self._ready = False
        self._warm = False  # a warm-up session opened since it last stopped answering
        self._not_warm = ""  # why the last warm-up failed (logged once per reason)
        self._http: aiohttp.ClientSession | None = None
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
        the bridge is ready when its engines are loaded."""
        self._tasks.spawn("bridge-watch", self._watch())

    async def stop(self) -> None:
        await self._tasks.cancel_all()
        self._ready = False
        await self._server.stop()
        await self._server.close()
        if self._owns_probe and isinstance(self._probe, HttpReadyProbe):
            await self._probe.close()
        if self._http is not None:
            await self._http.close()

    async def _watch(self) -> None:
        backoff_s = self._poll_s
        while True:
            view = await self._server.status()
            if view.state is not PowerState.RUNNING:
                self._ready = self._warm = False
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
            if not ready:
                self._warm = False
            elif not self._warm:
                self._warm = await self._warm_up()
            ready = ready and self._warm
            if ready and not self._ready:
                log.info("the bridge is ready at %s, its engines loaded", self._url)
                self.became_ready.set()
                backoff_s = self._poll_s
            self._ready = ready
            await asyncio.sleep(self._poll_s)

    async def _warm_up(self) -> bool:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        try:
            await warm_up(self._http, self._url, self._host_key)
        except NotWarm as exc:
            if str(exc) != self._not_warm:
                log.warning("the bridge is up but could not open a session yet: %s", exc)
                self._not_warm = str(exc)
            return False
        self._not_warm = ""
        return True
