"""``GET /v1/host/ledger``: what the GPU host and the gateway cost, and how long credits last.

Query ``days`` (1..366, default 30): how many UTC days the per-day series holds; start-to-ready
p50/p95 are measured over the same days. The body is ``GatewayLedger.to_json()`` (``ledger.py``):
``today``, ``month``, ``days``, ``start_to_ready``, ``credits``, the prices. A read: it never
wakes the host, and it answers while the host is off. The whole transition history is read in
a worker thread for each request (a few thousand rows a month); the console and ``status`` use
the same ``LedgerSource``, so the three never disagree.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from orchestrator.api.errors import BadRequest, describe, error_response
from orchestrator.config import AppConfig
from orchestrator.credits.runway import day_start
from orchestrator.gateway.controller import HostController
from orchestrator.gateway.ledger import GatewayLedger, gateway_ledger
from orchestrator.gateway.store import HostTransition

PATH = "/v1/host/ledger"
DEFAULT_DAYS = 30
MAX_DAYS = 366


@dataclass(frozen=True)
class LedgerSource:
    """The ledger's inputs in one place: the host's history, the prices, and the clock."""

    controller: HostController
    config: AppConfig
    clock: Callable[[], float] = time.time

    async def read(self, days: int = DEFAULT_DAYS) -> tuple[list[HostTransition], GatewayLedger]:
        """The whole history (oldest first) and the ledger made from it."""
        transitions = await asyncio.to_thread(self.controller.transitions, limit=None)
        gateway = self.config.gateway
        ledger = gateway_ledger(
            transitions,
            self.config.costs,
            gateway.usd_per_hour,
            now=self.clock(),
            days=days,
            gateway_since=day_start(gateway.billed_since) if gateway.billed_since else None,
        )
        return transitions, ledger

    async def ledger(self, days: int = DEFAULT_DAYS) -> GatewayLedger:
        return (await self.read(days))[1]


LEDGER = web.AppKey("gateway_ledger", LedgerSource)


def days_of(request: web.Request) -> int:
    text = request.query.get("days", str(DEFAULT_DAYS))
    try:
        days = int(text)
    except ValueError:
        days = 0
    if not 1 <= days <= MAX_DAYS:
        message = f"days must be a whole number from 1 to {MAX_DAYS}, not {text[:20]!r}"
        raise BadRequest(message, code="invalid_value", param="days")
    return days


async def host_ledger(request: web.Request) -> web.Response:
    try:
        days = days_of(request)
    except BadRequest as exc:
        return error_response(describe(exc))
    ledger = await request.app[LEDGER].ledger(days)
    return web.json_response(ledger.to_json())


def add_ledger_routes(
    app: web.Application,
    controller: HostController,
    config: AppConfig,
    *,
    clock: Callable[[], float] = time.time,
) -> None:
    """Mount ``GET /v1/host/ledger`` on the front door's app (its API key guard applies)."""
    app[LEDGER] = LedgerSource(controller, config, clock)
    app.router.add_get(PATH, host_ledger, name="host_ledger")
