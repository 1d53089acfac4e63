"""Run the gateway: the host controller and the front door the app talks to.

``GatewayServer`` starts and stops the parts in order (the end-to-end tests and the bench run it
in process); ``serve_gateway`` runs one until SIGINT or SIGTERM. With ``[gateway.prewarm]
enabled``, the pre-warm scheduler (``prewarm.py``) starts the host before the usual slots.
Stopping the gateway leaves the host as it is (a cloud VM runs on, and its own DORMANT
power-off is the backstop), except a ``local`` host with ``stop_with_gateway``; the bridge
(``[gateway.bridge]``), the gateway's own part, starts and stops with it.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from orchestrator.config import AppConfig
from orchestrator.config.gateway import LocalProvider
from orchestrator.config.secrets import Secrets
from orchestrator.core.sites import runner_settings, start_site
from orchestrator.gateway.app import create_gateway_app
from orchestrator.gateway.bridge import BridgeProcess
from orchestrator.gateway.console import create_gateway_console
from orchestrator.gateway.controller import HostController
from orchestrator.gateway.ledger_routes import add_ledger_routes
from orchestrator.gateway.plan_routes import add_plan_routes
from orchestrator.gateway.prewarm import PrewarmScheduler
from orchestrator.gateway.providers import create_provider
from orchestrator.gateway.providers.base import HostProvider
from orchestrator.gateway.readiness import HttpReadyProbe
from orchestrator.gateway.store import GatewayStore

log = logging.getLogger(__name__)


class GatewayServer:
    def __init__(
        self,
        config: AppConfig,
        secrets: Secrets,
        host_key: str,
        *,
        provider: HostProvider | None = None,
        console: bool = True,
    ) -> None:
        gateway = config.gateway
        self.config = config
        self.store = GatewayStore.in_dir(config.state.dir)
        self.provider = provider or create_provider(gateway.provider, config.state.dir, host_key)
        self._probe = HttpReadyProbe(host_key)
        self.controller = HostController(
            self.provider, gateway, self.store, host_key=host_key, probe=self._probe
        )
        self.bridge: BridgeProcess | None = None
        if gateway.bridge.enabled:
            self.bridge = BridgeProcess(
                gateway.bridge, config.state.dir, host_key, poll_s=gateway.poll_s
            )
        self.prewarm: PrewarmScheduler | None = None
        if gateway.prewarm.enabled:
            self.prewarm = PrewarmScheduler(self.controller, config)
        front_door = create_gateway_app(self.controller, gateway, secrets, bridge=self.bridge)
        add_ledger_routes(front_door, self.controller, config)
        add_plan_routes(front_door, self.controller, config, scheduler=self.prewarm)
        settings = runner_settings(config.server.idle_timeout_s, config.server.shutdown_grace_s)
        self._runner = web.AppRunner(front_door, **settings)
        self._console: web.AppRunner | None = None
        if console:
            console_app = create_gateway_console(
                self.controller, config, secrets, scheduler=self.prewarm
            )
            self._console = web.AppRunner(console_app, **settings)

    @property
    def url(self) -> str:
        gateway = self.config.gateway
        host = "127.0.0.1" if gateway.host in ("0.0.0.0", "") else gateway.host
        return f"http://{host}:{gateway.port}"

    async def start(self) -> None:
        gateway = self.config.gateway
        await self.controller.start()
        if self.prewarm is not None:
            await self.prewarm.start()
        if self.bridge is not None:
            await self.bridge.start()  # warm before the first student comes
        await self._runner.setup()
        await start_site(self._runner, gateway.host, gateway.port, "gateway.port")
        if self._console is not None:
            await self._console.setup()
            await start_site(
                self._console,
                gateway.console_host,
                gateway.console_port,
                "gateway.console_port",
            )

    async def stop(self, *, stop_local_host: bool = True) -> None:
        """Close the front door, then stop deciding; the host is left as it is, except a
        ``local`` one that is to stop with the gateway."""
        provider = self.config.gateway.provider
        try:
            if self._console is not None:
                await self._console.cleanup()
            await self._runner.cleanup()
            if self.prewarm is not None:
                await self.prewarm.close()
            await self.controller.close()
            if self.bridge is not None:
                await self.bridge.stop()
            local = isinstance(provider, LocalProvider) and provider.stop_with_gateway
            if stop_local_host and local:
                await self.provider.stop()
        finally:
            await self.provider.close()
            await self._probe.close()
            self.store.close()


async def serve_gateway(
    config: AppConfig, secrets: Secrets, host_key: str, *, stop: asyncio.Event | None = None
) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = GatewayServer(config, secrets, host_key)
    try:
        await server.start()
        print(
            f"voice-orchestrator gateway up ({server.provider.name} provider; host "
            f"{server.controller.snapshot().state})\n"
            f"  voice API  {server.url}  (Bearer key; the host's state: GET /v1/host)\n"
            f"  console    http://{config.gateway.console_host}:{config.gateway.console_port}"
            "  (user admin)",
            flush=True,
        )
        await stop.wait()
        log.info("stopping the gateway")
    finally:
        await server.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        log.info("gateway stopped")
