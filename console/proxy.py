"""Behind a TLS-terminating reverse proxy: believe its ``X-Forwarded-*`` headers, when told to.

The console speaks plain HTTP on loopback; an operator who publishes it puts a proxy (nginx,
Caddy, a cloud load balancer) in front that terminates TLS. The browser then talks HTTPS, so
the session cookie must be ``Secure`` and a form's ``Origin`` is ``https://...``; but the
console sees ``http``. With ``server.console_trust_proxy = true`` this middleware takes the
scheme from ``X-Forwarded-Proto`` and the client's address from the last ``X-Forwarded-For``
entry (the one the proxy itself added; earlier ones are whatever the client claimed). Without
it the headers are ignored: anyone could send them to a console reached directly.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from console.context import CONSOLE

PROTO = "X-Forwarded-Proto"
FOR = "X-Forwarded-For"


def forwarded_scheme(request: web.Request) -> str | None:
    """``https`` or ``http`` from the proxy's header (its first value); None when absent/odd."""
    value = request.headers.get(PROTO, "").split(",")[0].strip().lower()
    return value if value in ("http", "https") else None


def forwarded_client(request: web.Request) -> str | None:
    """The address the proxy saw: the last entry of ``X-Forwarded-For``."""
    entries = [part.strip() for part in request.headers.get(FOR, "").split(",")]
    return entries[-1] if entries and entries[-1] else None


@web.middleware
async def trusted_proxy(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.app[CONSOLE].trust_proxy:
        return await handler(request)
    scheme, client = forwarded_scheme(request), forwarded_client(request)
    if scheme is not None or client is not None:
        request = request.clone(
            scheme=scheme or request.scheme, remote=client or request.remote or "?"
        )
    return await handler(request)
