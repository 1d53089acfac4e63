"""Behind a TLS proxy: ``X-Forwarded-Proto``/``-For`` count only when the operator trusts the
proxy; then the cookie is Secure, the configured https public origin is our own, and the audit
names the client."""

from __future__ import annotations

from aiohttp import web

from console.context import CONSOLE
from console.session import COOKIE
from tests.conftest import CONSOLE_PASSWORD
from tests.console.conftest import Client, MakeClient, sign_in

PUBLIC = "https://console.example"
FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7, 203.0.113.9"}


async def login(client: Client) -> str:
    response = await client.post(
        "/login",
        data={"password": CONSOLE_PASSWORD, "next": "/"},
        headers=FORWARDED,
        allow_redirects=False,
    )
    assert response.status == 303
    return response.headers["Set-Cookie"]


async def test_forwarded_headers_are_ignored_unless_trusted(client: Client) -> None:
    assert client.app[CONSOLE].trust_proxy is False  # the default
    cookie = await login(client)
    assert cookie.startswith(f"{COOKIE}=") and "Secure" not in cookie
    entry = client.app[CONSOLE].audit.recent()[0]
    assert entry.remote == "127.0.0.1"  # not what a client claims
    csrf = await sign_in(client)
    origin = {"Origin": f"https://{client.host}:{client.port}", **FORWARDED, **csrf}
    refused = await client.post("/api/hibernation/keep-awake", json={}, headers=origin)
    assert refused.status == 403


async def test_a_trusted_proxy_makes_the_cookie_secure(
    console_app: web.Application, aiohttp_client: MakeClient
) -> None:
    console_app[CONSOLE].trust_proxy = True  # server.console_trust_proxy = true
    console_app[CONSOLE].origins = frozenset({PUBLIC})  # and server.console_public_origin
    client = await aiohttp_client(console_app)
    cookie = await login(client)
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    entry = client.app[CONSOLE].audit.recent()[0]
    assert (entry.action, entry.remote) == ("login", "203.0.113.9")  # the proxy's own entry
    csrf = await sign_in(client)  # the test client sends the cookie over http regardless
    origin = {"Origin": PUBLIC, **FORWARDED, **csrf}
    done = await client.post("/api/hibernation/keep-awake", json={}, headers=origin)
    assert done.status == 200
    plain = {"Origin": "http://console.example", **FORWARDED, **csrf}
    assert (await client.post("/api/hibernation/wake", json={}, headers=plain)).status == 403
