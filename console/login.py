"""Sign-in and sign-out: the password form, the session cookie, and their audit entries.

A successful sign-in sets the signed session cookie (HttpOnly, SameSite=Strict, Secure when
served over HTTPS, expiring with the session) and goes back to the page that asked for it.
Failed attempts are counted per address; past the limit the address waits (429). Both, and
every sign-out, are written to the audit log.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from console.auth import session_identity
from console.context import CONSOLE, IDENTITY, USER, Identity, record, remote_of
from console.pages import render
from console.session import COOKIE


def _local(target: str | None) -> str:
    """Only paths on this console: never an open redirect to another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return "/" if target.startswith("/login") else target


def _see_other(target: str) -> web.Response:
    return web.Response(status=303, headers={"Location": target})


async def login_page(request: web.Request) -> web.StreamResponse:
    target = _local(request.query.get("next"))
    if session_identity(request) is not None:
        return _see_other(target)
    return render(request, "login.html", next=target, error=None)


async def login(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    form = await request.post()
    target = _local(str(form.get("next", "/")))
    remote = remote_of(request)
    wait = console.throttle.retry_after(remote, console.clock())
    if wait > 0:
        error = f"Too many failed attempts. Try again in {wait / 60:.0f} min."
        return render(request, "login.html", next=target, error=error, status=429)
    user = str(form.get("username", USER)) or USER
    password = str(form.get("password", ""))
    ok = user == USER and bool(password)
    ok = ok and await asyncio.to_thread(console.passwords.check, password)
    if not ok:
        console.throttle.failed(remote, console.clock())
        anonymous = Identity(via="password", actor=user[:64])
        await record(request, "login", ok=False, error="wrong user or password", identity=anonymous)
        error = "Wrong password."
        return render(request, "login.html", next=target, error=error, status=401)
    console.throttle.succeeded(remote)
    cookie, _session = console.signer.issue()
    await record(request, "login", identity=Identity(via="password"))
    response = _see_other(target)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=int(console.signer.ttl_s),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    identity = request[IDENTITY]
    if identity.session is not None:
        await asyncio.to_thread(console.revoked.revoke, identity.session, console.clock())
    await record(request, "logout")
    response = _see_other("/login")
    response.del_cookie(COOKIE, path="/")
    return response


def add_login_routes(app: web.Application) -> None:
    app.router.add_get("/login", login_page, name="login")
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
