"""The gateway's console (``[gateway] console_port``, 8767): the operator's page for the GPU host.

    /login, /logout          sign-in page and form posts           console.login (shared)
    /                        the host: state, ETA, Start/Stop,      views
                             money, runway, the learned week
                             (heat map, next planned start and
                             why), history, audit
    /events?view=host        server-sent events: the page's parts   live
                             anew on every host transition
    /api/host/start, /stop   the operator's buttons (audited)       views
    /static/...              the server console's CSS and script    console/static

It reuses the server console's sign-in, session cookie, throttle, audit log and write guards
(Origin, JSON body, CSRF token), which know nothing of the runtime; its state lives in the
gateway's SQLite file. It lives here, not under ``console/``, because it reads the host
controller, and the console package stands below the gateway in the import layers. It never
calls the GPU host, so it works while the host is off: everything it shows comes from the
controller and the gateway's own history.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from aiohttp import web

from console.audit import AuditLog
from console.auth import authenticate, guard_writes, security_headers
from console.context import CONSOLE, Console
from console.login import add_login_routes
from console.origin import origins_of
from console.password import HASH_ENV, PasswordCheck
from console.render import STATIC, template_env
from console.session import KEY_FILE, RevokedSessions, SessionSigner, load_or_create_key
from console.throttle import LoginThrottle
from orchestrator.config import AppConfig, ConfigError
from orchestrator.config.secrets import Secrets
from orchestrator.gateway.console.live import add_live_routes
from orchestrator.gateway.console.views import NAV, add_view_routes
from orchestrator.gateway.controller import HostController
from orchestrator.gateway.ledger_routes import LedgerSource
from orchestrator.gateway.prewarm import PrewarmScheduler
from orchestrator.gateway.store import DB_NAME

log = logging.getLogger(__name__)
TEMPLATES = Path(__file__).parent / "templates"


def create_gateway_console(
    controller: HostController,
    config: AppConfig,
    secrets: Secrets,
    *,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
    db: Path | None = None,
    scheduler: PrewarmScheduler | None = None,
) -> web.Application:
    """The console app; serve it on ``config.gateway.console_host``/``console_port``. Its
    sign-ins, revoked sessions and audit go to ``db`` (default: the gateway's ``gateway.db``
    in the state folder, beside the host's history)."""
    environ = os.environ if environ is None else environ
    try:
        passwords = PasswordCheck.from_environment(secrets.console_password, environ)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    state_dir = config.state.dir
    path = db or state_dir / DB_NAME
    gateway = config.gateway
    app = web.Application(middlewares=[security_headers, authenticate, guard_writes])
    app.router.add_static("/static", STATIC, name="static", append_version=True)
    app[CONSOLE] = Console(
        templates=template_env(app, NAV, TEMPLATES),
        passwords=passwords,
        signer=SessionSigner(load_or_create_key(state_dir / KEY_FILE), clock=clock),
        revoked=RevokedSessions(path),
        audit=AuditLog(path),
        throttle=LoginThrottle(path),
        origins=origins_of(gateway.console_host, gateway.console_port),
        clock=clock,
    )
    add_login_routes(app)
    add_view_routes(app, LedgerSource(controller, config, clock), scheduler)
    add_live_routes(app)

    async def announce(app: web.Application) -> None:
        plain = environ.get("VO_CONSOLE_PASSWORD") and "VO_CONSOLE_PASSWORD"
        log.info(
            "gateway console: sign in as admin with the password in %s, or one of your own: %s",
            plain or state_dir / "console_password",
            HASH_ENV,
        )

    async def close(app: web.Application) -> None:
        app[CONSOLE].close()

    app.on_startup.append(announce)
    app.on_cleanup.append(close)
    return app
