"""The console's read-only JSON endpoints (behind the login). None of them is voice activity."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from console.context import CONSOLE
from console.credits_view import MAX_DAYS, daily
from console.plan_view import plan_of
from console.snapshot import snapshot
from orchestrator.app.runtime import RUNTIME


def _int_query(request: web.Request, name: str, default: int, most: int) -> int:
    try:
        value = int(request.query.get(name, str(default)))
    except ValueError:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"{name} must be an integer"}),
            content_type="application/json",
        ) from None
    return max(1, min(value, most))


async def state(request: web.Request) -> web.Response:
    """The short form the CLI and scripts read: ladder summary and each engine's state."""
    runtime = request.app[RUNTIME]
    statuses = await runtime.fleet.statuses()
    return web.json_response(
        {
            "hibernation": runtime.hibernation_summary(),
            "engines": {s.name: {"state": s.state, "pinned": s.pinned} for s in statuses},
        }
    )


async def full_snapshot(request: web.Request) -> web.Response:
    return web.json_response(await snapshot(request.app[RUNTIME]))


async def transitions(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    limit = _int_query(request, "limit", 100, 1000)
    records = await asyncio.to_thread(runtime.store.transitions, limit=limit)
    return web.json_response([record.__dict__ for record in records])


async def credits(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    return web.json_response(await asyncio.to_thread(runtime.credits))


async def credits_daily(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    days = _int_query(request, "days", 14, MAX_DAYS)
    return web.json_response(await asyncio.to_thread(daily, runtime.ledger, runtime.clock(), days))


async def audit(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    limit = _int_query(request, "limit", 100, 1000)
    entries = await asyncio.to_thread(console.audit.recent, limit)
    return web.json_response([entry.to_dict() for entry in entries])


async def plan(request: web.Request) -> web.Response:
    """The plan page's table as JSON: one column per GPU (detected, then each named type)."""
    return web.json_response(await plan_of(request.app[RUNTIME]))


def add_read_routes(app: web.Application) -> None:
    app.router.add_get("/api/state", state)
    app.router.add_get("/api/snapshot", full_snapshot)
    app.router.add_get("/api/transitions", transitions)
    app.router.add_get("/api/credits", credits)
    app.router.add_get("/api/credits/daily", credits_daily)
    app.router.add_get("/api/audit", audit)
    app.router.add_get("/api/plan", plan)
