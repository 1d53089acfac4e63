"""The host page: what it shows, its parts for live updates, and the Start and Stop buttons.

One function (``view_data``) gathers everything the page and its fragments render: the
controller's snapshot and expected start, the ledger, the latest transitions and audit
entries. The page includes the fragments; the live stream (``live.py``) renders the same ones
again, so the browser swaps in HTML from one set of templates.

Start and Stop are audited before they act, so the entry is there when the transition they
cause reaches open pages. Start asks the controller to bring the host up and returns at once;
Stop waits (a few seconds at most) for the host to begin stopping.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from aiohttp import web

from console.context import CONSOLE, record
from console.render import render
from orchestrator.gateway.ledger_routes import DEFAULT_DAYS, LedgerSource
from orchestrator.gateway.lifecycle import UP, WAKING, HostSnapshot, HostState
from orchestrator.gateway.plan_routes import current_plan
from orchestrator.gateway.prewarm import PrewarmScheduler
from orchestrator.gateway.store import HostTransition

VIEW = "host"
NAV = ((VIEW, "/", "Host"),)
FRAGMENTS = ("host_state", "host_money", "host_plan", "host_history", "audit_table")
TRANSITION_ROWS = 50
AUDIT_ROWS = 20
DAY_ROWS = 14
# The console's badge colours, reused for the host's states.
BADGES = {
    HostState.STOPPED: "state-dormant",
    HostState.STARTING: "state-warm",
    HostState.BOOTING: "state-warm",
    HostState.READY: "ok",
    HostState.DRAINING: "state-cool",
    HostState.STOPPING: "state-cold",
    HostState.FAILED: "down",
}

SOURCE = web.AppKey("gateway_console_source", LedgerSource)
SCHEDULER: web.AppKey[PrewarmScheduler | None] = web.AppKey("gateway_console_prewarm")


def history_rows(transitions: list[HostTransition], now: float) -> list[dict[str, Any]]:
    """The latest transitions, newest first, each with how long the host stayed there."""
    recent = transitions[-TRANSITION_ROWS:]
    ends = [t.at for t in recent[1:]] + [now]
    return [{**asdict(t), "lasted": end - t.at} for t, end in zip(recent, ends, strict=True)][::-1]


async def view_data(request: web.Request) -> dict[str, Any]:
    source, console = request.app[SOURCE], request.app[CONSOLE]
    transitions, ledger = await source.read(DEFAULT_DAYS)
    entries = await asyncio.to_thread(console.audit.recent, AUDIT_ROWS)
    snapshot = source.controller.snapshot()
    p50, p95 = source.controller.expected_start()
    now, money = ledger.now, ledger.to_json()
    host = snapshot.to_json()
    host["eta_until"] = None if snapshot.eta_s is None else now + snapshot.eta_s
    state = snapshot.state
    prewarm = source.config.gateway.prewarm
    scheduler = request.app[SCHEDULER]
    plan = await current_plan(source.controller, source.config, scheduler, now)
    return {
        "view": VIEW,
        "now": now,
        "host": host,
        "badge": BADGES[state],
        "waking": state in WAKING,
        "up": state in UP,
        "can_start": state not in UP | WAKING,
        "can_stop": state not in (HostState.STOPPED, HostState.STOPPING),
        "expected": {"p50": p50, "p95": p95},
        "ledger": money,
        "days": money["days"][-DAY_ROWS:][::-1],
        "transitions": history_rows(transitions, now),
        "audit": [entry.to_dict() for entry in entries],
        "plan": plan,
        "threshold": prewarm.threshold,
        "min_weeks": prewarm.min_weeks,
        "timezone": prewarm.timezone,
    }


def update_message(request: web.Request, data: dict[str, Any]) -> dict[str, Any]:
    """One live update in the shape the console's script reads: the fragments anew."""
    templates = request.app[CONSOLE].templates
    fragments = {
        name: templates.get_template(f"fragments/{name}.html").render(data) for name in FRAGMENTS
    }
    return {"now": data["now"], "state": data["host"]["state"], "fragments": fragments}


async def page(request: web.Request) -> web.Response:
    return render(request, "host.html", **await view_data(request))


async def _act(request: web.Request, action: str) -> HostSnapshot:
    controller = request.app[SOURCE].controller
    before = controller.snapshot()
    await record(request, action, target=before.instance, state=before.state.value)
    if action == "host_start":
        return await controller.wake("operator")
    return await controller.stop("operator")


async def start(request: web.Request) -> web.Response:
    return web.json_response((await _act(request, "host_start")).to_json())


async def stop(request: web.Request) -> web.Response:
    return web.json_response((await _act(request, "host_stop")).to_json())


def add_view_routes(
    app: web.Application, source: LedgerSource, scheduler: PrewarmScheduler | None = None
) -> None:
    app[SOURCE] = source
    app[SCHEDULER] = scheduler
    app.router.add_get("/", page, name="host")
    app.router.add_post("/api/host/start", start)
    app.router.add_post("/api/host/stop", stop)
