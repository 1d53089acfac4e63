"""The management console (port 8766): pages, live updates, the admin API, and the sign-in.

    /login, /logout                     sign-in page and form posts      console.login
    /, /engines, /hibernation,          server-rendered pages            console.pages
      /credits, /plan, /talk, /audit
    /talk/realtime                      the Talk page's voice socket,    console.talk
                                          relayed to /v1/realtime
    /events?view=<page>                 server-sent events from the bus  console.live
    /events/logs                        managed processes' output, live  console.process_logs
    /api/...                            JSON reads and operator actions  console.reads, .admin
    /static/...                         CSS, scripts, vendored Chart.js  console/static

Everything but ``/login`` needs the session cookie or HTTP Basic (``console.auth``). The
console binds to loopback by default; behind a TLS proxy it believes ``X-Forwarded-Proto`` only
when ``server.console_trust_proxy`` is set (``console.proxy``). Nothing here records voice
activity, so an open console never keeps the engines awake, except a Talk session, which is a
real voice session on the API; its one background task keeps the overview's chart history
(``console.recorder``).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Mapping

from aiohttp import web

from console.admin import add_admin_routes
from console.audit import AuditLog
from console.auth import authenticate, guard_writes, security_headers
from console.context import CONSOLE, Console
from console.history_store import HistoryStore
from console.live import add_live_routes, push_point
from console.login import add_login_routes
from console.origin import allowed_origins
from console.pages import NAV, add_page_routes
from console.password import HASH_ENV, PasswordCheck
from console.process_logs import add_log_routes
from console.proxy import trusted_proxy
from console.reads import add_read_routes
from console.recorder import recording
from console.render import STATIC, template_env
from console.session import KEY_FILE, RevokedSessions, SessionSigner, load_or_create_key
from console.talk import add_talk_routes
from console.throttle import LoginThrottle
from orchestrator.app.runtime import RUNTIME, Runtime
from orchestrator.config import ConfigError

log = logging.getLogger(__name__)


def _console(
    app: web.Application,
    runtime: Runtime,
    environ: Mapping[str, str],
    clock: Callable[[], float],
) -> Console:
    state_dir = runtime.config.state.dir
    try:
        passwords = PasswordCheck.from_environment(runtime.secrets.console_password, environ)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    db = runtime.store.path
    trust_proxy = runtime.config.server.console_trust_proxy
    console = Console(
        templates=template_env(app, NAV),
        passwords=passwords,
        signer=SessionSigner(load_or_create_key(state_dir / KEY_FILE), clock=clock),
        revoked=RevokedSessions(db),
        audit=AuditLog(db),
        throttle=LoginThrottle(db),
        origins=allowed_origins(runtime.config.server),
        clock=clock,
        bus=runtime.bus,
        trust_proxy=trust_proxy,
        history_store=HistoryStore(db),
    )
    console.history.listeners.append(lambda point: push_point(console, point))
    return console


async def _announce(app: web.Application, environ: Mapping[str, str]) -> None:
    """Say at start where the password is, and how to choose one's own; and which origin may
    change state when the console listens beyond loopback without a public origin."""
    server = app[RUNTIME].config.server
    if server.console_host in ("0.0.0.0", "::") and server.console_public_origin is None:
        log.warning(
            "the console listens on every address but accepts changes only from %s: set "
            "server.console_public_origin to the address you open it at",
            " or ".join(sorted(app[CONSOLE].origins)),
        )
    if app[CONSOLE].passwords.hashed is None:
        where = (
            "VO_CONSOLE_PASSWORD"
            if environ.get("VO_CONSOLE_PASSWORD")
            else app[RUNTIME].config.state.dir / "console_password"
        )
        log.warning(
            "console sign-in: user admin, the password in %s. To choose your own, run "
            "`python -m console.password` and set the %s it prints",
            where,
            HASH_ENV,
        )


async def _close(app: web.Application) -> None:
    app[CONSOLE].close()


def create_console_app(
    runtime: Runtime,
    *,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    app = web.Application(middlewares=[trusted_proxy, security_headers, authenticate, guard_writes])
    app[RUNTIME] = runtime
    app.router.add_static("/static", STATIC, name="static", append_version=True)
    environ = os.environ if environ is None else environ
    app[CONSOLE] = _console(app, runtime, environ, clock)
    add_login_routes(app)
    add_page_routes(app)
    add_live_routes(app)
    add_log_routes(app)
    add_read_routes(app)
    add_admin_routes(app)
    add_talk_routes(app)
    app.on_startup.append(functools.partial(_announce, environ=environ))
    app.cleanup_ctx.append(recording)
    app.on_cleanup.append(_close)
    return app
