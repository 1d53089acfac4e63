"""The console's gate: who a request is, and whether a state-changing request may go through.

Requests prove who they are with the signed session cookie (the browser, after signing in at
``/login``) or with HTTP Basic ``admin:<password>`` (the CLI's ``wake``/``hibernate``; the
console never sends a Basic challenge, so browsers do not offer or cache one). Without either,
pages redirect to ``/login`` and everything else answers 401.

Every sign-in attempt, by the form or by HTTP Basic, first asks the throttle (429 while the user
name waits, ``console.throttle`` says per what), and every failed or throttled one is audited.

State-changing requests (POST, PUT, PATCH, DELETE) pass three checks:
  - an ``Origin``, when sent, must be the console's public origin (403 otherwise;
    ``console.origin``), never judged by the ``Host`` header the client sent;
  - ``/api/*`` bodies must be ``application/json`` (415), which a cross-site form cannot send
    without a CORS preflight that we never grant;
  - a cookie session must send its CSRF token, as header ``X-CSRF-Token`` (or form field
    ``csrf_token`` for the sign-out form) (403). Basic clients carry no cookie and need none.
Every response also gets a strict Content-Security-Policy and no-store caching.
"""

from __future__ import annotations

import asyncio
import base64
import binascii

from aiohttp import web
from aiohttp.typedefs import Handler
from yarl import URL

from console.context import CONSOLE, IDENTITY, USER, Identity, record, remote_of
from console.origin import origin_refusal
from console.session import COOKIE, DEVICE_COOKIE
from console.throttle import ADDRESS, DEVICE, MAX_NAME

OPEN_PATHS = frozenset({"/login"})
MALFORMED = "?"  # the user name of an Authorization header that is not readable Basic
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def wants_page(request: web.Request) -> bool:
    """A browser navigation (an HTML page), not the API, the live stream, a static file or a
    WebSocket (the Talk page's voice socket)."""
    path = request.path
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return False
    return request.method == "GET" and not path.startswith(("/api/", "/events", "/static/"))


def source_of(request: web.Request) -> str:
    """Where a sign-in attempt comes from, for the throttle: a signed device, else the address."""
    cookie = request.cookies.get(DEVICE_COOKIE)
    device = request.app[CONSOLE].signer.device(cookie) if cookie else None
    return f"{DEVICE}{device}" if device else f"{ADDRESS}{remote_of(request)}"


async def sign_in_wait(request: web.Request, user: str, via: str) -> float:
    """Seconds ``user`` must wait before trying from here (0: go on); a wait is audited."""
    console, source = request.app[CONSOLE], source_of(request)
    wait = await asyncio.to_thread(console.throttle.retry_after, user, source, console.clock())
    if wait > 0:
        error = f"throttled: too many failed sign-ins, {wait:.0f} s to wait"
        await _audit_failure(request, user, via, error, source)
    return wait


async def sign_in_failed(request: web.Request, user: str, via: str, error: str) -> None:
    """Count a failed attempt against ``user`` from here, and audit it."""
    console, source = request.app[CONSOLE], source_of(request)
    await asyncio.to_thread(console.throttle.failed, user, source, console.clock())
    await _audit_failure(request, user, via, error, source)


async def sign_in_succeeded(request: web.Request, user: str) -> None:
    console = request.app[CONSOLE]
    await asyncio.to_thread(console.throttle.succeeded, user, source_of(request))


async def _audit_failure(
    request: web.Request, user: str, via: str, error: str, source: str
) -> None:
    identity = Identity(via=via, actor=user[:MAX_NAME])
    await record(request, "login", ok=False, error=error, identity=identity, source=source)


def _credentials(request: web.Request) -> tuple[str, str] | None:
    """The (user, password) of an HTTP Basic header; None when it is not readable Basic."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


async def _basic(request: web.Request) -> Identity | web.Response | None:
    """The identity HTTP Basic proves; a 429 while its user name waits; None when it fails."""
    credentials = _credentials(request)
    user, password = credentials or (MALFORMED, "")
    wait = await sign_in_wait(request, user, "basic")
    if wait > 0:
        return _json_error(429, f"too many failed sign-ins; retry in {wait:.0f} s")
    passwords = request.app[CONSOLE].passwords
    ok = user == USER and (
        passwords.check_plain(password)
        or (passwords.hashed is not None and await asyncio.to_thread(passwords.check, password))
    )
    if not ok:
        error = "wrong user or password" if credentials else "malformed Authorization header"
        await sign_in_failed(request, user, "basic", error)
        return None
    await sign_in_succeeded(request, user)
    return Identity(via="basic")


def session_identity(request: web.Request) -> Identity | None:
    console = request.app[CONSOLE]
    cookie = request.cookies.get(COOKIE)
    session = console.signer.verify(cookie) if cookie else None
    if session is None or session.sid in console.revoked:
        return None
    return Identity(via="session", session=session)


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    identity = session_identity(request)
    if identity is None and "Authorization" in request.headers:
        basic = await _basic(request)
        if isinstance(basic, web.Response):
            return basic
        identity = basic
    if identity is not None:
        request[IDENTITY] = identity
    elif request.path not in OPEN_PATHS:
        if wants_page(request):
            raise web.HTTPSeeOther(URL("/login").with_query(next=request.rel_url.path_qs))
        return _json_error(401, "login required: sign in at /login, or send HTTP Basic")
    return await handler(request)


@web.middleware
async def guard_writes(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method not in WRITES:
        return await handler(request)
    refusal = origin_refusal(request.headers.get("Origin"), request.app[CONSOLE].origins)
    if refusal is not None:
        return _json_error(403, refusal)
    if request.path.startswith("/api/") and request.content_type != "application/json":
        return _json_error(415, "state-changing requests must be application/json")
    identity = request.get(IDENTITY)
    if identity is not None and identity.session is not None and request.path not in OPEN_PATHS:
        token = request.headers.get("X-CSRF-Token", "")
        if not token and request.content_type == "application/x-www-form-urlencoded":
            token = str((await request.post()).get("csrf_token", ""))
        if not request.app[CONSOLE].signer.csrf_valid(identity.session, token):
            return _json_error(403, "missing or wrong CSRF token; reload the page")
    return await handler(request)


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _harden(request, exc)
        raise
    _harden(request, response)
    return response


def _harden(request: web.Request, response: web.StreamResponse) -> None:
    if response.prepared:  # the live stream sets its own headers before it starts
        return
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    if request.path.startswith("/static/"):
        headers.setdefault("Cache-Control", "private, max-age=86400")
    else:
        headers.setdefault("Cache-Control", "no-store")
