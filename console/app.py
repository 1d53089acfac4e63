"""The console application: for now one status page behind a login.

The login is HTTP Basic (user ``admin``, the console password from ``orchestrator.secrets``)
on a loopback bind by default; the full console with its own sign-in page replaces it.
Console reads never count as voice activity.
"""

from __future__ import annotations

import base64
import binascii
import time
from pathlib import Path

import jinja2
from aiohttp import web
from aiohttp.typedefs import Handler

from console.admin import add_admin_routes, guard_writes
from orchestrator import health
from orchestrator.runtime import RUNTIME, Runtime

USER = "admin"
_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
)


def _credentials_ok(request: web.Request, runtime: Runtime) -> bool:
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return user == USER and runtime.secrets.console_password_valid(password)


@web.middleware
async def require_login(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not _credentials_ok(request, request.app[RUNTIME]):
        return web.Response(
            status=401,
            text="login required",
            headers={"WWW-Authenticate": 'Basic realm="voice-orchestrator console"'},
        )
    return await handler(request)


def _mb(value: int | None) -> str:
    return "—" if value is None else f"{value / 1e6:,.0f} MB"


async def status_page(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    statuses = await runtime.fleet.statuses()
    summary = health.summary(
        statuses,
        profile=runtime.config.profile,
        hibernation=runtime.hibernation_summary(),
        shutting_down=runtime.shutting_down,
        uptime_s=runtime.uptime(),
    )
    html = _templates.get_template("status.html").render(
        summary=summary,
        statuses=statuses,
        mb=_mb,
        generated=time.strftime("%Y-%m-%d %H:%M:%S"),
        api_port=runtime.config.server.api_port,
    )
    return web.Response(text=html, content_type="text/html")


def create_console_app(runtime: Runtime) -> web.Application:
    app = web.Application(middlewares=[require_login, guard_writes])
    app[RUNTIME] = runtime
    app.router.add_get("/", status_page)
    add_admin_routes(app)
    return app
