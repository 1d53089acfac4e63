"""The gateway app's typed keys, in one module below every route (the routes never import
each other, and ``app.py`` fills these)."""

from __future__ import annotations

import asyncio
import weakref

import aiohttp
from aiohttp import web

from orchestrator.config.gateway import GatewayConfig
from orchestrator.config.secrets import Secrets
from orchestrator.gateway.gate import Bridge, HostGate

GATE: web.AppKey[HostGate] = web.AppKey("gateway_gate")
"""The host controller, seen through the protocol the front door needs."""

BRIDGE: web.AppKey[Bridge] = web.AppKey("gateway_bridge")
"""The bridge, when the gateway has one (``[gateway.bridge] enabled``); absent otherwise."""

CONFIG = web.AppKey("gateway_config", GatewayConfig)
SECRETS = web.AppKey("gateway_secrets", Secrets)
"""The clients' keys (never sent to the host: the gate's ``host_key`` is)."""

HTTP = web.AppKey("gateway_http", aiohttp.ClientSession)
"""The one client session to the host, opened on startup and closed on cleanup."""

SOCKETS: web.AppKey[weakref.WeakSet[web.WebSocketResponse]] = web.AppKey("gateway_sockets")
"""Every open client WebSocket, closed with 1001 on shutdown."""

CLOSING = web.AppKey("gateway_closing", asyncio.Event)
"""Set on shutdown: event streams end and holds stop waiting."""

HEARTBEAT_S = web.AppKey("gateway_heartbeat_s", float)
"""How often an idle ``/v1/host/events`` stream sends a comment, so proxies keep it open."""

STARTED_AT = web.AppKey("gateway_started_at", float)
