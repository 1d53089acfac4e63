"""Pages from templates: the Jinja environment and ``render``, shared by both consoles.

The server's console and the gateway's (``orchestrator.gateway.console``) build their
environment here from their own template folders, in front of this package's (where the sign-in
page and the macros live), with their own navigation; both serve this package's ``static/``.
Nothing here knows the runtime, so the gateway can use it on a machine without one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from console import format as formatting
from console.context import CONSOLE, IDENTITY

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

NavItem = tuple[str, str, str]  # (view, path, label)


def template_env(
    app: web.Application, nav: Sequence[NavItem], *folders: Path
) -> jinja2.Environment:
    """Templates from ``folders`` first, then this package's; ``static_url`` for the static
    route named ``static`` of ``app``; ``nav`` for the page header."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([*folders, TEMPLATES]),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    formatting.install(env)

    def static_url(name: str) -> str:
        return str(app.router["static"].url_for(filename=name))

    env.globals["static_url"] = static_url
    env.globals["nav"] = tuple(nav)
    return env


def render(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
    """A page, with the session's CSRF token for its forms and scripts."""
    console = request.app[CONSOLE]
    identity = request.get(IDENTITY)
    csrf = ""
    if identity is not None and identity.session is not None:
        csrf = console.signer.csrf_token(identity.session)
    html = console.templates.get_template(template).render(
        csrf_token=csrf, identity=identity, **context
    )
    return web.Response(text=html, content_type="text/html", status=status)
