"""Run the gateway until SIGINT or SIGTERM: the host controller, the front door the app talks
to, and the operator's console on loopback.

Stopping the gateway leaves the host as it is (a cloud VM runs on, and its own DORMANT
power-off is the backstop), except a ``local`` host with ``stop_with_gateway``.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from orchestrator.config import AppConfig
from orchestrator.config.gateway import LocalProvider
from orchestrator.config.secrets import Secrets
from orchestrator.core.sites import start_site
from orchestrator.gateway.app import create_gateway_app
from orchestrator.gateway.controller import HostController
from orchestrator.gateway.providers import create_provider
from orchestrator.gateway.readiness import HttpReadyProbe
from orchestrator.gateway.store import GatewayStore

log = logging.getLogger(__name__)


async def serve_gateway(
    config: AppConfig, secrets: Secrets, host_key: str, *, stop: asyncio.Event | None = None
) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    gateway = config.gateway
    store = GatewayStore.in_dir(config.state.dir)
    provider = create_provider(gateway.provider, config.state.dir, host_key)
    probe = HttpReadyProbe(host_key)
    controller = HostController(provider, gateway, store, host_key=host_key, probe=probe)
    runner = web.AppRunner(
        create_gateway_app(controller, gateway, secrets),
        access_log=None,
        keepalive_timeout=config.server.idle_timeout_s,
    )
    try:
        await controller.start()
        await runner.setup()
        grace = config.server.shutdown_grace_s
        await start_site(runner, gateway.host, gateway.port, "gateway.port", grace)
        snapshot = controller.snapshot()
        print(
            f"voice-orchestrator gateway up ({provider.name} provider; host {snapshot.state})\n"
            f"  voice API  http://{gateway.host}:{gateway.port}  (Bearer key; the host's "
            f"state: GET /v1/host)",
            flush=True,
        )
        await stop.wait()
        log.info("stopping the gateway")
    finally:
        await runner.cleanup()
        await controller.close()
        if isinstance(gateway.provider, LocalProvider) and gateway.provider.stop_with_gateway:
            await provider.stop()
        await provider.close()
        await probe.close()
        store.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        log.info("gateway stopped")
