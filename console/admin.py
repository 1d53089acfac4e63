"""The console's admin API: operator actions as JSON, behind the console login.

State-changing requests must carry ``Content-Type: application/json`` (a cross-site form
cannot send it without a CORS preflight, which we never grant) and, when the browser sends an
``Origin``, it must be this console's own. Every action is written to the log and published
as an ``audit`` event.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from orchestrator.fleet import UnknownEngine
from orchestrator.ladder import IdleState
from orchestrator.runtime import RUNTIME, Runtime
from services.errors import EngineError

log = logging.getLogger("console.audit")
MAX_KEEP_AWAKE_MIN = 24 * 60


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def guard_writes(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method in ("POST", "PUT", "PATCH", "DELETE"):
        if request.content_type != "application/json":
            return _json_error(415, "state-changing requests must be application/json")
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            return _json_error(403, f"cross-origin request from {origin} refused")
    return await handler(request)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json() if request.can_read_body else {}
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return data


def _audit(runtime: Runtime, request: web.Request, action: str, **details: Any) -> None:
    log.info("operator %s from %s: %s", action, request.remote, details)
    runtime.bus.publish("audit", action=action, remote=request.remote, **details)


async def state(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    statuses = await runtime.fleet.statuses()
    return web.json_response(
        {
            "hibernation": runtime.hibernation_summary(),
            "engines": {s.name: {"state": s.state, "pinned": s.pinned} for s in statuses},
        }
    )


async def transitions(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    try:
        limit = min(int(request.query.get("limit", "100")), 1000)
    except ValueError:
        return _json_error(400, "limit must be an integer")
    records = runtime.store.transitions(limit=limit)
    return web.json_response([record.__dict__ for record in records])


async def keep_awake(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    minutes = (await _body(request)).get("minutes", 60)
    if not isinstance(minutes, int | float) or not 0 < minutes <= MAX_KEEP_AWAKE_MIN:
        return _json_error(400, f"minutes must be a number in (0, {MAX_KEEP_AWAKE_MIN}]")
    await runtime.hibernator.keep_awake(minutes * 60, cause="operator keep-awake")
    _audit(runtime, request, "keep_awake", minutes=minutes)
    return web.json_response(runtime.hibernation_summary())


async def hibernate(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    name = (await _body(request)).get("state", "cold")
    try:
        target = IdleState(name)
    except ValueError:
        return _json_error(400, f"state must be one of {[s.value for s in IdleState]}")
    if target is IdleState.ACTIVE:
        return _json_error(400, "use /api/hibernation/wake to wake")
    await runtime.hibernator.force(target, cause="operator hibernate")
    _audit(runtime, request, "hibernate", state=target.value)
    return web.json_response(runtime.hibernation_summary())


async def wake(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    await runtime.hibernator.force(IdleState.ACTIVE, cause="operator wake")
    runtime.fleet.prewarm(runtime.preload_engines())
    _audit(runtime, request, "wake")
    return web.json_response(runtime.hibernation_summary())


async def engine_action(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    name, action = request.match_info["name"], request.match_info["action"]
    body = await _body(request)
    try:
        if action == "load":
            await runtime.fleet.load(name)
        elif action == "unload":
            outcome = await runtime.fleet.unload(name, respect_pin=False)
            if not outcome.unloaded:
                return _json_error(409, f"{name} not unloaded: {outcome.reason}")
        elif action == "pin":
            runtime.pin(name, bool(body.get("pinned", True)))
        else:
            return _json_error(404, f"unknown action {action!r}; use load, unload or pin")
    except UnknownEngine:
        return _json_error(404, f"no engine named {name!r}")
    except EngineError as exc:
        return _json_error(409, str(exc))
    _audit(runtime, request, action, engine=name, **body)
    status = await runtime.fleet.status(name)
    return web.json_response({"engine": name, "state": status.state, "pinned": status.pinned})


async def credits(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    return web.json_response(await asyncio.to_thread(runtime.credits))


def add_admin_routes(app: web.Application) -> None:
    app.router.add_get("/api/state", state)
    app.router.add_get("/api/credits", credits)
    app.router.add_get("/api/transitions", transitions)
    app.router.add_post("/api/hibernation/keep-awake", keep_awake)
    app.router.add_post("/api/hibernation/hibernate", hibernate)
    app.router.add_post("/api/hibernation/wake", wake)
    app.router.add_post("/api/engines/{name}/{action}", engine_action)
