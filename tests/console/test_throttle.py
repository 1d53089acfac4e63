"""The sign-in throttle: per user name and source (a signed device, else the address), kept in
the state database, and every failed or throttled attempt audited, form and HTTP Basic alike."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from console.app import create_console_app
from console.context import CONSOLE
from console.session import COOKIE, DEVICE_COOKIE
from console.throttle import LoginThrottle
from orchestrator.app.runtime import Runtime
from tests.conftest import CONSOLE_PASSWORD
from tests.console.conftest import Client, MakeClient, sign_in
from tests.fakes import FakeClock
from tests.helpers import basic

ADMIN = basic("admin", CONSOLE_PASSWORD)
WRONG = basic("admin", "guess")


async def flood(client: Client, headers: dict[str, str], times: int = 10) -> list[int]:
    return [(await client.get("/api/state", headers=headers)).status for _ in range(times)]


def jar_cookie(client: Client, name: str) -> str:
    return client.session.cookie_jar.filter_cookies(client.make_url("/"))[name].value


async def test_a_local_flood_does_not_lock_out_a_browser_that_signed_in_before(
    client: Client,
) -> None:
    await sign_in(client)
    device = jar_cookie(client, DEVICE_COOKIE)
    client.session.cookie_jar.clear()  # the session is gone; the device cookie is kept aside
    assert await flood(client, WRONG, 12) == [401] * 10 + [429] * 2
    assert (await client.get("/api/state", headers=ADMIN)).status == 429  # that source waits
    client.session.cookie_jar.update_cookies({DEVICE_COOKIE: device})
    await sign_in(client)  # the browser does not
    assert (await client.get("/api/state")).status == 200


async def test_a_device_cookie_must_be_signed(client: Client) -> None:
    await sign_in(client)
    device = jar_cookie(client, DEVICE_COOKIE)
    forged = device[:-2] + ("AA" if device[-2:] != "AA" else "BB")
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies({DEVICE_COOKIE: forged})
    assert await flood(client, WRONG, 11) == [401] * 10 + [429]
    entry = client.app[CONSOLE].audit.recent(limit=1)[0]
    assert entry.details == {"source": "address:127.0.0.1"}  # a forged device is an address


async def test_a_flood_for_one_user_name_does_not_lock_out_another(client: Client) -> None:
    assert await flood(client, basic("root", "toor"), 11) == [401] * 10 + [429]
    assert (await client.get("/api/state", headers=ADMIN)).status == 200
    wrong_user = await client.post(
        "/login", data={"username": "root", "password": CONSOLE_PASSWORD}, allow_redirects=False
    )
    assert wrong_user.status == 429  # root waits, on the form too
    await sign_in(client)


async def test_a_flood_from_one_address_does_not_lock_out_another(
    console_app: web.Application, aiohttp_client: MakeClient
) -> None:
    console_app[CONSOLE].trust_proxy = True  # behind a proxy, addresses are told apart
    client = await aiohttp_client(console_app)
    attacker = {**WRONG, "X-Forwarded-For": "198.51.100.7"}
    assert await flood(client, attacker, 11) == [401] * 10 + [429]
    operator = {**ADMIN, "X-Forwarded-For": "203.0.113.9"}
    assert (await client.get("/api/state", headers=operator)).status == 200


def test_failures_spread_over_addresses_lock_the_name_for_addresses_only(tmp_path: Path) -> None:
    throttle = LoginThrottle(tmp_path / "state.db", limit=3, untrusted_limit=5, window_s=100.0)
    for n, address in enumerate(["a", "a", "b", "b", "c"]):
        assert throttle.retry_after("admin", f"address:{address}", 10.0 + n) == 0
        throttle.failed("admin", f"address:{address}", 10.0 + n)
    assert throttle.retry_after("admin", "address:fresh", 20.0) == 90.0  # 5 from addresses
    assert throttle.retry_after("admin", "device:laptop", 20.0) == 0  # a device is counted apart
    assert throttle.retry_after("other", "address:fresh", 20.0) == 0
    assert throttle.retry_after("admin", "address:fresh", 110.0) == 0  # the first one aged out
    throttle.close()


def test_the_wait_ends_when_the_window_slides_past(tmp_path: Path) -> None:
    throttle = LoginThrottle(tmp_path / "state.db", limit=3, window_s=100.0)
    for at in (0.0, 10.0, 20.0, 30.0):
        throttle.failed("admin", "address:a", at)
    # four in the window, three is the bound: two must age out, the second at 10 + 100
    assert throttle.retry_after("admin", "address:a", 40.0) == 70.0
    assert throttle.retry_after("admin", "address:a", 109.0) == 1.0
    assert throttle.retry_after("admin", "address:a", 110.0) == 0
    throttle.succeeded("admin", "address:a")
    assert throttle.retry_after("admin", "address:a", 40.0) == 0
    throttle.close()


async def test_the_throttle_survives_a_restart(
    runtime: Runtime, aiohttp_client: MakeClient, clock: FakeClock
) -> None:
    client = await aiohttp_client(create_console_app(runtime, environ={}, clock=clock))
    for _ in range(10):
        wrong = await client.post("/login", data={"password": "guess"}, allow_redirects=False)
        assert wrong.status == 401
    later = await aiohttp_client(create_console_app(runtime, environ={}, clock=clock))
    refused = await later.post("/login", data={"password": CONSOLE_PASSWORD}, allow_redirects=False)
    assert refused.status == 429
    assert "Try again in 15 min" in await refused.text()
    clock.advance(15 * 60)
    await sign_in(later)


async def test_failed_basic_sign_ins_are_audited(client: Client) -> None:
    assert (await client.get("/api/state", headers=basic("admin", "guess"))).status == 401
    assert (await client.get("/api/state", headers=basic("root", "x"))).status == 401
    malformed = {"Authorization": "Basic not-base64!"}
    assert (await client.get("/api/state", headers=malformed)).status == 401
    assert (await client.get("/api/state", headers=ADMIN)).status == 200  # not a sign-in entry
    entries = client.app[CONSOLE].audit.recent()
    assert [(e.action, e.ok, e.via, e.actor, e.error) for e in entries] == [
        ("login", False, "basic", "?", "malformed Authorization header"),
        ("login", False, "basic", "root", "wrong user or password"),
        ("login", False, "basic", "admin", "wrong user or password"),
    ]
    assert {e.remote for e in entries} == {"127.0.0.1"}


async def test_a_sign_in_hands_out_a_hardened_device_cookie_once(client: Client) -> None:
    first = await client.post("/login", data={"password": CONSOLE_PASSWORD}, allow_redirects=False)
    device = first.cookies[DEVICE_COOKIE]
    assert device["httponly"] is True and device["samesite"] == "Strict"
    assert int(device["max-age"]) == 180 * 86400
    again = await client.post("/login", data={"password": CONSOLE_PASSWORD}, allow_redirects=False)
    assert COOKIE in again.cookies and DEVICE_COOKIE not in again.cookies
