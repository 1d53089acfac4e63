"""Run the voice API (port 11400) and the console (port 8766) until SIGINT or SIGTERM.

The two are separate aiohttp applications served from one event loop, so console routes can
never be reached on the public voice port. Both share one ``Runtime``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from aiohttp import web

from console.app import create_console_app
from orchestrator.api.app import create_api_app
from orchestrator.app.runtime import Runtime
from orchestrator.config import AppConfig, ServerConfig
from orchestrator.config.secrets import Secrets
from orchestrator.core.sites import runner_settings, start_site

log = logging.getLogger(__name__)


def runner_options(server: ServerConfig) -> dict[str, Any]:
    """What both apps' request handlers are built with: no access log, and a connection with no
    complete request for ``idle_timeout_s`` is closed (aiohttp's keep-alive timer runs from the
    connection's start too, so one that never sends, or never finishes, its request is
    closed as well). A body's reading time is bounded by the routes (``api.body_timeout_s``)."""
    return runner_settings(server.idle_timeout_s, server.shutdown_grace_s)


async def serve(config: AppConfig, secrets: Secrets, *, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runtime = Runtime.create(config, secrets)
    server = config.server
    runners = [
        web.AppRunner(create_api_app(runtime), **runner_options(server)),
        web.AppRunner(create_console_app(runtime), **runner_options(server)),
    ]
    try:
        for runner in runners:
            await runner.setup()
        await start_site(runners[0], server.api_host, server.api_port, "server.api_port")
        await start_site(
            runners[1], server.console_host, server.console_port, "server.console_port"
        )
        if runtime.supervisor is not None:
            await runtime.supervisor.recover_orphans()  # children a crashed run left behind
        runtime.start()
        print(
            f"voice-orchestrator up (profile {config.profile})\n"
            f"  voice API  http://{server.api_host}:{server.api_port}  (Bearer key; "
            f"/health/live is open)\n"
            f"  console    http://{server.console_host}:{server.console_port}  (user admin)",
            flush=True,
        )
        await stop.wait()
        log.info("stopping")
    finally:
        runtime.shutting_down = True
        for runner in reversed(runners):
            await runner.cleanup()
        await runtime.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        log.info("stopped")
