"""Sign-in and sign-out: the password form, the session cookie, and their audit entries.

A successful sign-in sets the signed session cookie (HttpOnly, SameSite=Strict, Secure when
served over HTTPS, expiring with the session), a device cookie when the browser has none (so its
later failures are counted apart: ``console.throttle``), and goes back to the page that asked
for it. Failed attempts are counted per user name and source; past the limit that pair waits
(429). Successes, failures, throttled attempts and every sign-out are written to the audit log.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from console.auth import (
    session_identity,
    sign_in_failed,
    sign_in_succeeded,
    sign_in_wait,
    source_of,
)
from console.context import CONSOLE, IDENTITY, USER, Identity, record
from console.render import render
from console.session import COOKIE, DEVICE_COOKIE, DEVICE_TTL_S
from console.throttle import DEVICE


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
    user = str(form.get("username", USER)) or USER
    wait = await sign_in_wait(request, user, "password")
    if wait > 0:
        error = f"Too many failed attempts. Try again in {max(1, round(wait / 60))} min."
        return render(request, "login.html", next=target, error=error, status=429)
    password = str(form.get("password", ""))
    ok = user == USER and bool(password)
    ok = ok and await asyncio.to_thread(console.passwords.check, password)
    if not ok:
        await sign_in_failed(request, user, "password", "wrong user or password")
        error = "Wrong password."
        return render(request, "login.html", next=target, error=error, status=401)
    await sign_in_succeeded(request, user)
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
    if not source_of(request).startswith(DEVICE):
        response.set_cookie(
            DEVICE_COOKIE,
            console.signer.issue_device(),
            max_age=int(DEVICE_TTL_S),
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
