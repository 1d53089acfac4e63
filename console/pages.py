"""The console's HTML pages, rendered on the server from the same data the live stream sends."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from console import overrides
from console.context import CONSOLE
from console.fragments import view_data
from console.plan_view import plan_of
from console.process_logs import BACKLOG, tails
from console.render import render
from console.snapshot import ladder_view
from console.talk import PATH as TALK_PATH
from orchestrator.app.runtime import RUNTIME
from services.base import Role

NAV = (
    ("overview", "/", "Overview"),
    ("engines", "/engines", "Engines"),
    ("hibernation", "/hibernation", "Hibernation"),
    ("credits", "/credits", "Credits"),
    ("plan", "/plan", "Plan"),
    ("talk", "/talk", "Talk"),
    ("audit", "/audit", "Audit"),
)


async def _page(request: web.Request, view: str, **extra: Any) -> web.Response:
    data = await view_data(request, view)
    return render(request, f"{view}.html", **data, **extra)


async def overview(request: web.Request) -> web.Response:
    history = request.app[CONSOLE].history
    return await _page(
        request,
        "overview",
        history=history.to_list(),
        history_step_s=history.step_s,
        history_keep_s=history.keep_s,
    )


async def engines(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    data = await view_data(request, "engines")
    managed = [
        e["name"] for e in data["snap"]["engines"] if e["runtime"] == "managed" or e["process"]
    ]
    return render(request, "engines.html", **data, logs=tails(runtime, managed), backlog=BACKLOG)


async def hibernation(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    path = runtime.config.state.dir / overrides.FILE_NAME
    pending = overrides.saved(path)
    running = runtime.config.hibernation
    return await _page(
        request,
        "hibernation",
        settings=running,
        settings_ladder=ladder_view(running),
        roles=[role.value for role in Role],
        overrides_path=str(path),
        pending=None if pending is None or pending == running else ladder_view(pending),
        pending_settings=pending,
    )


async def credits(request: web.Request) -> web.Response:
    return await _page(request, "credits")


async def plan(request: web.Request) -> web.Response:
    return await _page(request, "plan", plan=await plan_of(request.app[RUNTIME]))


async def talk(request: web.Request) -> web.Response:
    """The voice path in the browser: the page's script opens ``console.talk``'s socket."""
    server = request.app[RUNTIME].config.server
    return await _page(request, "talk", api_port=server.api_port, socket_path=TALK_PATH)


async def audit(request: web.Request) -> web.Response:
    return await _page(request, "audit")


def add_page_routes(app: web.Application) -> None:
    app.router.add_get("/", overview, name="overview")
    app.router.add_get("/engines", engines, name="engines")
    app.router.add_get("/hibernation", hibernation, name="hibernation")
    app.router.add_get("/credits", credits, name="credits")
    app.router.add_get("/plan", plan, name="plan")
    app.router.add_get("/talk", talk, name="talk")
    app.router.add_get("/audit", audit, name="audit")
