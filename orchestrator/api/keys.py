"""The voice API's typed app keys, in one module below every route.

The Realtime and duplex routes share the set of open sockets (closed together on shutdown) and
the Realtime route reaches the duplex router (``session.backend = "duplex"``). Were these keys
defined by the routes that fill them, the two routes would import each other; here each route
imports only this module.
"""

from __future__ import annotations

import weakref
from collections import Counter
from typing import Any

from aiohttp import web

from orchestrator.duplex.routing import DuplexRouter

SOCKETS: web.AppKey[weakref.WeakSet[Any]] = web.AppKey("realtime_sockets")
"""Every open Realtime and duplex WebSocket, closed with code 1001 on shutdown."""

PER_KEY: web.AppKey[Counter[str]] = web.AppKey("realtime_per_key")
"""Open Realtime sessions per API key (``sessions.max_per_key``)."""

DUPLEX_ROUTER = web.AppKey("duplex_router", DuplexRouter)
"""Who serves a full-duplex session: the duplex engine or the cascade."""
