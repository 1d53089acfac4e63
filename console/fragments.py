"""The parts of each page that change: their data, and their HTML from one set of templates.

A page includes its fragments (``templates/fragments/<name>.html``) when it is served; the live
stream renders the same templates after every bus event and sends them, so the browser swaps
in HTML rendered by the server rather than keeping a second renderer in JavaScript.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from console.context import CONSOLE
from console.credits_view import cost_by_state, daily
from console.snapshot import snapshot, transitions_view
from orchestrator.app.runtime import RUNTIME

# Which fragments each page shows; "status" is the header badge every page has.
VIEWS: dict[str, tuple[str, ...]] = {
    "overview": ("status", "ladder", "credit_cards", "engine_summary", "vram", "sessions"),
    "engines": ("status", "engine_table"),
    "hibernation": ("status", "ladder", "timeline"),
    "credits": ("status", "credit_cards", "cost_by_state"),
    "plan": ("status",),
    "talk": ("status", "sessions"),
    "audit": ("status", "audit_table"),
}
AUDIT_ROWS = 100
TIMELINE_ROWS = 20


async def view_data(request: web.Request, view: str) -> dict[str, Any]:
    """Everything the page ``view`` and its fragments render from."""
    runtime, console = request.app[RUNTIME], request.app[CONSOLE]
    names = VIEWS[view]
    data: dict[str, Any] = {"view": view, "snap": await snapshot(runtime)}
    if "timeline" in names:
        data["transitions"] = await transitions_view(runtime, TIMELINE_ROWS)
    if "audit_table" in names:
        entries = await asyncio.to_thread(console.audit.recent, AUDIT_ROWS)
        data["audit"] = [entry.to_dict() for entry in entries]
    if "cost_by_state" in names:
        data["daily"] = await asyncio.to_thread(daily, runtime.ledger, runtime.clock())
        data["cost_by_state"] = cost_by_state(data["snap"]["credits"])
    return data


def render_fragments(request: web.Request, data: dict[str, Any]) -> dict[str, str]:
    templates = request.app[CONSOLE].templates
    return {
        name: templates.get_template(f"fragments/{name}.html").render(data)
        for name in VIEWS[data["view"]]
    }


def update_message(request: web.Request, data: dict[str, Any]) -> dict[str, Any]:
    """One live update: the fragments' HTML plus the few values scripts use directly."""
    snap = data["snap"]
    message: dict[str, Any] = {
        "now": snap["now"],
        "status": snap["status"],
        "state": snap["hibernation"]["state"],
        "engines": {engine["name"]: engine["state"] for engine in snap["engines"]},
        "fragments": render_fragments(request, data),
    }
    if "daily" in data:
        message["daily"] = data["daily"]
    return message
