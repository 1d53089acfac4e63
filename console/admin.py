"""The console's admin API: operator actions as JSON, behind the console login.

Every request here passed ``console.auth`` (login, Origin, JSON body, CSRF token for cookie
sessions). Every action, done or refused, is written to the audit log (``console.audit``) and
published on the bus as an ``audit`` event, which open consoles show at once.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from console import overrides
from console.context import IDENTITY, record
from console.credits_view import SimulationError, parse_timeouts, run_simulation
from orchestrator.app.runtime import RUNTIME, Runtime
from orchestrator.core.idle import IdleState
from orchestrator.fleet.errors import UnknownEngine
from orchestrator.fleet.records import ParkOutcome, UnloadOutcome
from services.errors import EngineError

MAX_KEEP_AWAKE_MIN = 24 * 60
ACTIONS = ("load", "unload", "park", "restart", "pin")


def _json_error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json() if request.can_read_body else {}
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return data


async def _refused(
    request: web.Request, action: str, status: int, message: str, target: str = "", **details: Any
) -> web.Response:
    await record(request, action, target=target, ok=False, error=message, **details)
    return _json_error(status, message)


async def keep_awake(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    minutes = (await _body(request)).get("minutes", 60)
    if not isinstance(minutes, int | float) or not 0 < minutes <= MAX_KEEP_AWAKE_MIN:
        message = f"minutes must be a number in (0, {MAX_KEEP_AWAKE_MIN}]"
        return await _refused(request, "keep_awake", 400, message, minutes=str(minutes))
    await runtime.hibernator.keep_awake(minutes * 60, cause="operator keep-awake")
    await record(request, "keep_awake", minutes=minutes)
    return web.json_response(runtime.hibernation_summary())


async def hibernate(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    name = (await _body(request)).get("state", "cold")
    try:
        target = IdleState(name)
    except ValueError:
        message = f"state must be one of {[s.value for s in IdleState]}"
        return await _refused(request, "hibernate", 400, message, state=str(name))
    if target is IdleState.ACTIVE:
        return await _refused(request, "hibernate", 400, "use /api/hibernation/wake to wake")
    await runtime.hibernator.force(target, cause="operator hibernate")
    await record(request, "hibernate", target=target.value)
    stayed = await runtime.still_loaded()
    return web.json_response({**runtime.hibernation_summary(), "stayed_loaded": stayed})


async def wake(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    await runtime.hibernator.force(IdleState.ACTIVE, cause="operator wake")
    engines = runtime.preload_engines()
    runtime.fleet.prewarm(engines)
    await record(request, "wake", loading=engines)
    return web.json_response(runtime.hibernation_summary())


async def engine_action(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    name, action = request.match_info["name"], request.match_info["action"]
    body = await _body(request)
    if action not in ACTIONS:
        return _json_error(404, f"unknown action {action!r}; use {', '.join(ACTIONS)}")
    if name not in runtime.fleet.names:
        return await _refused(request, action, 404, f"no engine named {name!r}", target=name)
    details: dict[str, Any] = {}
    try:
        if action == "load":
            runtime.bus.publish("engine.loading", engine=name)
            report = await runtime.fleet.load(name, by_operator=True)
            details = {"seconds": round(report.seconds, 3)}
        elif action == "unload":
            outcome = await runtime.fleet.unload(name, respect_pin=False)
            if not outcome.unloaded:
                message = f"{name} not unloaded: {outcome.reason}"
                return await _refused(request, action, 409, message, target=name)
            details = _unload_details(outcome)
        elif action == "park":
            parked = await runtime.fleet.park(name, respect_pin=False)
            if not parked.done:
                message = f"{name} not parked: {parked.reason}"
                return await _refused(request, action, 409, message, target=name)
            details = _park_details(parked)
        elif action == "restart":
            details = await _restart(runtime, name)
        else:
            details = {"pinned": bool(body.get("pinned", True))}
            runtime.pin(name, details["pinned"])
    except UnknownEngine:
        return await _refused(request, action, 404, f"no engine named {name!r}", target=name)
    except EngineError as exc:
        return await _refused(request, action, 409, str(exc), target=name)
    await record(request, action, target=name, **details)
    status = await runtime.fleet.status(name)
    return web.json_response({"engine": name, "state": status.state, "pinned": status.pinned})


def _unload_details(outcome: UnloadOutcome) -> dict[str, Any]:
    report = outcome.report
    if report is None:
        return {}
    return {
        "seconds": round(report.seconds, 3),
        "ram_freed_bytes": report.ram_freed_bytes,
        "vram_freed_bytes": report.vram_freed_bytes,
    }


def _park_details(outcome: ParkOutcome) -> dict[str, Any]:
    """Parked (what host RAM keeps), or unloaded instead and why."""
    if outcome.parked is None:
        unloaded = UnloadOutcome(outcome.engine, True, report=outcome.unloaded)
        return {"unloaded_instead": outcome.reason, **_unload_details(unloaded)}
    return {
        "seconds": round(outcome.parked.seconds, 3),
        "ram_kept_bytes": outcome.parked.ram_kept_bytes,
        "vram_freed_bytes": outcome.parked.vram_freed_bytes,
    }


async def _restart(runtime: Runtime, name: str) -> dict[str, Any]:
    """Unload (a managed engine's unload stops its server) and load again: a fresh start.

    An engine in use by a request is not unloaded: the restart is refused rather than cut a
    student off mid-sentence. An engine that was not loaded is simply loaded."""
    outcome = await runtime.fleet.unload(name, respect_pin=False)
    if not outcome.unloaded and not outcome.reason.startswith("already"):
        raise EngineError(f"not restarted: {outcome.reason}", engine=name)
    runtime.bus.publish("engine.loading", engine=name)
    report = await runtime.fleet.load(name, by_operator=True)
    return {"unloaded": outcome.unloaded, "seconds": round(report.seconds, 3)}


async def save_hibernation_settings(request: web.Request) -> web.Response:
    """Validate new thresholds and per-state actions; save them as an override for restart."""
    runtime = request.app[RUNTIME]
    changes = await _body(request)
    try:
        settings = overrides.proposed(runtime.config.hibernation, changes)
    except overrides.OverrideError as exc:
        await record(request, "hibernation_settings", ok=False, error=str(exc))
        return _json_error(400, "invalid settings", problems=exc.problems)
    path = runtime.config.state.dir / overrides.FILE_NAME
    await asyncio.to_thread(overrides.save, path, settings, who=request[IDENTITY].actor)
    await record(request, "hibernation_settings", target=str(path), **changes)
    return web.json_response(
        {
            "saved": str(path),
            "restart": f"python -m orchestrator serve --config {path}",
            "settings": settings.model_dump(mode="json"),
        }
    )


async def run_simulator(request: web.Request) -> web.Response:
    """Replay an uploaded trace (sent as text in JSON) under the standard policies."""
    runtime = request.app[RUNTIME]
    body = await _body(request)
    trace, filename = body.get("trace"), str(body.get("filename", "trace.csv"))[:200]
    if not isinstance(trace, str) or not trace.strip():
        return _json_error(400, "trace must be the text of a CSV or JSONL file")
    try:
        timeouts = parse_timeouts(str(body.get("timeouts", "15,30")))
        report = await asyncio.to_thread(run_simulation, runtime.config, trace, filename, timeouts)
    except SimulationError as exc:
        return await _refused(request, "simulate", 400, str(exc), file=filename)
    await record(request, "simulate", target=filename, sessions=report["trace"]["sessions"])
    return web.json_response(report)


def add_admin_routes(app: web.Application) -> None:
    app.router.add_post("/api/hibernation/keep-awake", keep_awake)
    app.router.add_post("/api/hibernation/hibernate", hibernate)
    app.router.add_post("/api/hibernation/wake", wake)
    app.router.add_post("/api/hibernation/settings", save_hibernation_settings)
    app.router.add_post("/api/engines/{name}/{action}", engine_action)
    app.router.add_post("/api/simulate", run_simulator)
