"""The gateway's front door: one aiohttp app in front of the GPU host.

    /health/live, /health, /v1/host, /v1/host/events, /v1/wake    the gateway's own
    /v1/realtime, /v1/duplex     WebSockets: accepted at once, held, relayed (``passage.py``)
    /host/health[/ready], /host/metrics    the host's, read only while it is up
    /v1/...                      everything else: held, then passed through (``proxy.py``)

Every route but ``/health/live`` needs a client key (``auth.py``); the host is sent the gate's
key instead. The app owns one client session to the host (opened on startup, closed on
cleanup); with a ``bridge`` (``[gateway.bridge]``), sessions and requests that come while the
host wakes are served by it (``handover.py``, ``proxy.py``). On shutdown every client socket
is closed with 1001, each passage closes its socket to the host, and event streams end.
The host controller behind ``gate`` is the caller's: it is started before this app and
stopped after it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from aiohttp import web

from orchestrator.api.errors import json_errors
from orchestrator.config.gateway import GatewayConfig
from orchestrator.config.secrets import Secrets
from orchestrator.gateway.auth import require_client_key
from orchestrator.gateway.duplex import add_duplex_route
from orchestrator.gateway.gate import Bridge, HostGate
from orchestrator.gateway.host_routes import add_host_routes
from orchestrator.gateway.keys import (
    BRIDGE,
    CLOSING,
    CONFIG,
    GATE,
    HEARTBEAT_S,
    HTTP,
    SECRETS,
    STARTED_AT,
)
from orchestrator.gateway.proxy import host_health, proxy
from orchestrator.gateway.realtime import add_realtime_route
from orchestrator.gateway.sockets import add_socket_keys
from orchestrator.gateway.upstream import open_session

EVENTS_HEARTBEAT_S = 15.0


async def _client_session(app: web.Application) -> AsyncIterator[None]:
    app[HTTP] = open_session()
    app[STARTED_AT] = time.monotonic()
    yield
    await app[HTTP].close()


async def _closing(app: web.Application) -> None:
    app[CLOSING].set()


def create_gateway_app(
    gate: HostGate,
    config: GatewayConfig,
    secrets: Secrets,
    *,
    events_heartbeat_s: float = EVENTS_HEARTBEAT_S,
    bridge: Bridge | None = None,
) -> web.Application:
    app = web.Application(middlewares=[json_errors, require_client_key])
    app[GATE] = gate
    app[CONFIG] = config
    app[SECRETS] = secrets
    app[CLOSING] = asyncio.Event()
    app[HEARTBEAT_S] = events_heartbeat_s
    if bridge is not None:
        app[BRIDGE] = bridge
    app.cleanup_ctx.append(_client_session)
    app.on_shutdown.append(_closing)
    add_socket_keys(app)
    add_host_routes(app)
    add_realtime_route(app)
    add_duplex_route(app)
    for path in ("/host/health", "/host/health/ready", "/host/metrics"):
        app.router.add_get(path, host_health)
    app.router.add_route("*", "/v1/{tail:.*}", proxy)  # last: the routes above come first
    return app
