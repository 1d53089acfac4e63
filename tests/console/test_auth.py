"""Console sign-in: pages need a session, the cookie is hardened, CSRF is enforced, sign-out
revokes, a configured password hash works, and the CLI's HTTP Basic keeps working."""

from __future__ import annotations

import asyncio
import io
import stat
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from console.app import create_console_app
from console.context import CONSOLE
from console.password import PasswordHash, hash_password, main
from console.session import COOKIE
from orchestrator.app.runtime import Runtime
from orchestrator.commands import console_client
from orchestrator.config import ConfigError
from orchestrator.core.idle import IdleState
from orchestrator.core.store import open_database
from tests.conftest import CONSOLE_PASSWORD
from tests.console.conftest import Client, MakeClient, sign_in
from tests.helpers import basic

PAGES = ["/", "/engines", "/hibernation", "/credits", "/plan", "/talk", "/audit"]
READS = [
    "/api/state",
    "/api/snapshot",
    "/api/transitions",
    "/api/credits",
    "/api/credits/daily",
    "/api/audit",
    "/api/plan",
    "/events",
    "/events/logs",
    "/static/console.js",
]
WRITES = [
    "/api/hibernation/keep-awake",
    "/api/hibernation/hibernate",
    "/api/hibernation/wake",
    "/api/hibernation/settings",
    "/api/engines/asr/load",
    "/api/engines/asr/unload",
    "/api/engines/asr/pin",
    "/api/engines/asr/restart",
    "/api/simulate",
]


async def test_everything_but_the_sign_in_needs_a_login(client: Client) -> None:
    for path in PAGES:
        response = await client.get(path, allow_redirects=False)
        assert response.status == 303, path
        assert response.headers["Location"].startswith("/login?next=")
    for path in READS:
        response = await client.get(path)
        assert response.status == 401, path
        assert "WWW-Authenticate" not in response.headers  # browsers never offer Basic
    for path in WRITES:
        assert (await client.post(path, json={})).status == 401, path
    assert (await client.post("/logout")).status == 401
    page = await client.get("/login")
    assert page.status == 200
    assert 'name="password"' in await page.text()
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]


async def test_sign_in_sets_a_hardened_session_cookie(client: Client, runtime: Runtime) -> None:
    response = await client.post(
        "/login",
        data={"password": CONSOLE_PASSWORD, "next": "/engines"},
        allow_redirects=False,
    )
    assert response.status == 303
    assert response.headers["Location"] == "/engines"
    cookie = response.cookies[COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/"
    assert int(cookie["max-age"]) == 12 * 3600
    assert (await client.get("/engines")).status == 200
    entries = client.app[CONSOLE].audit.recent()
    assert [(e.action, e.ok, e.via) for e in entries] == [("login", True, "password")]


async def test_wrong_passwords_are_refused_audited_and_throttled(client: Client) -> None:
    for _ in range(10):
        wrong = await client.post("/login", data={"password": "guess"}, allow_redirects=False)
        assert wrong.status == 401
        assert COOKIE not in wrong.cookies
    throttled = await client.post("/login", data={"password": CONSOLE_PASSWORD})
    assert throttled.status == 429  # even the right password waits now
    basic_too = await client.get("/api/state", headers=basic("admin", CONSOLE_PASSWORD))
    assert basic_too.status == 429
    entries = client.app[CONSOLE].audit.recent(limit=20)
    assert len(entries) == 12  # the throttled attempts are failed sign-ins too
    assert all(e.action == "login" and not e.ok and e.actor == "admin" for e in entries)
    assert [(e.via, e.error.split(":")[0]) for e in entries[:2]] == [
        ("basic", "throttled"),
        ("password", "throttled"),
    ]
    assert {e.error for e in entries[2:]} == {"wrong user or password"}


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example", "/login", ""])
async def test_sign_in_never_redirects_off_the_console(client: Client, target: str) -> None:
    response = await client.post(
        "/login", data={"password": CONSOLE_PASSWORD, "next": target}, allow_redirects=False
    )
    assert response.headers["Location"] == "/"


async def test_forged_and_expired_cookies_are_refused(
    runtime: Runtime, aiohttp_client: MakeClient
) -> None:
    now = [1_000_000.0]
    client = await aiohttp_client(create_console_app(runtime, environ={}, clock=lambda: now[0]))
    await sign_in(client)
    value = client.session.cookie_jar.filter_cookies(client.make_url("/"))[COOKIE].value
    payload, _, signature = value.partition(".")
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + signature
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies({COOKIE: forged})
    assert (await client.get("/api/state")).status == 401
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies({COOKIE: value})
    assert (await client.get("/api/state")).status == 200
    now[0] += 12 * 3600 + 1
    assert (await client.get("/api/state")).status == 401


async def test_cookie_sessions_must_send_the_csrf_token(
    client: Client, csrf: dict[str, str], runtime: Runtime
) -> None:
    path = "/api/hibernation/hibernate"
    assert (await client.post(path, json={"state": "cold"})).status == 403
    token = csrf["X-CSRF-Token"]
    wrong = {"X-CSRF-Token": ("y" if token[0] == "x" else "x") + token[1:]}
    assert (await client.post(path, json={"state": "cold"}, headers=wrong)).status == 403
    form = await client.post(path, data={"state": "cold"}, headers=csrf)
    assert form.status == 415
    foreign = {**csrf, "Origin": "http://evil.example"}
    assert (await client.post(path, json={"state": "cold"}, headers=foreign)).status == 403
    assert runtime.hibernator.state is IdleState.ACTIVE
    ok = await client.post(path, json={"state": "cold"}, headers=csrf)
    assert ok.status == 200
    assert runtime.hibernator.state is IdleState.COLD


async def test_sign_out_revokes_the_session_for_good(
    client: Client, csrf: dict[str, str], runtime: Runtime, aiohttp_client: MakeClient
) -> None:
    value = client.session.cookie_jar.filter_cookies(client.make_url("/"))[COOKIE].value
    refused = await client.post("/logout", data={"csrf_token": "nope"}, allow_redirects=False)
    assert refused.status == 403
    out = await client.post(
        "/logout", data={"csrf_token": csrf["X-CSRF-Token"]}, allow_redirects=False
    )
    assert out.status == 303
    assert out.headers["Location"] == "/login"
    assert (await client.get("/", allow_redirects=False)).status == 303
    # The old cookie, replayed, stays dead, also for a console started afterwards.
    later = await aiohttp_client(create_console_app(runtime, environ={}))
    later.session.cookie_jar.update_cookies({COOKIE: value})
    assert (await later.get("/api/state")).status == 401
    actions = [e.action for e in client.app[CONSOLE].audit.recent()]
    assert actions == ["logout", "login"]


async def test_a_configured_password_hash_signs_in(
    runtime: Runtime, aiohttp_client: MakeClient
) -> None:
    environ = {"VO_CONSOLE_PASSWORD_HASH": hash_password("my own secret", log2_n=10)}
    client = await aiohttp_client(create_console_app(runtime, environ=environ))
    await sign_in(client, "my own secret")
    assert (await client.get("/api/state", headers=basic("admin", "my own secret"))).status == 200
    bad = await client.post("/login", data={"password": "my own secre"}, allow_redirects=False)
    assert bad.status == 401
    with pytest.raises(ConfigError, match="VO_CONSOLE_PASSWORD_HASH"):
        create_console_app(runtime, environ={"VO_CONSOLE_PASSWORD_HASH": "md5$abc"})


def test_the_password_command_prints_a_hash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
    assert main(["--stdin"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("export VO_CONSOLE_PASSWORD_HASH='scrypt$")
    parsed = PasswordHash.parse(line.split("'")[1])
    assert parsed.verify("correct horse") and not parsed.verify("correct horsE")
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["--stdin"]) == 2


async def test_http_basic_serves_the_cli_without_csrf(client: Client, runtime: Runtime) -> None:
    admin = basic("admin", CONSOLE_PASSWORD)
    assert (await client.get("/api/state", headers=admin)).status == 200
    for headers in (basic("admin", "wrong"), basic("root", CONSOLE_PASSWORD)):
        assert (await client.get("/api/state", headers=headers)).status == 401
    response = await client.post(
        "/api/hibernation/hibernate", json={"state": "cool"}, headers=admin
    )
    assert response.status == 200  # no cookie, so no CSRF token to send
    assert runtime.hibernator.state is IdleState.COOL
    entry = client.app[CONSOLE].audit.recent(limit=1)[0]
    assert (entry.action, entry.via, entry.target) == ("hibernate", "basic", "cool")


async def test_the_cli_wake_and_hibernate_commands_still_work(
    runtime: Runtime, aiohttp_server: Any
) -> None:
    server = await aiohttp_server(create_console_app(runtime, environ={}))
    config = runtime.config.model_copy(
        update={"server": runtime.config.server.model_copy(update={"console_port": server.port})}
    )
    secrets_file = config.state.dir / "console_password"
    secrets_file.write_text(CONSOLE_PASSWORD + "\n")
    secrets_file.chmod(0o600)
    hibernated = await asyncio.to_thread(
        console_client.post, config, "/api/hibernation/hibernate", {"state": "cold"}
    )
    assert hibernated["state"] == "cold"
    woken = await asyncio.to_thread(console_client.post, config, "/api/hibernation/wake")
    assert woken["state"] == "active"


def test_the_session_key_is_private(console_app: web.Application, runtime: Runtime) -> None:
    key = Path(runtime.config.state.dir) / "console_session_key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_the_state_database_is_private(console_app: web.Application, runtime: Runtime) -> None:
    db = Path(runtime.config.state.dir) / "orchestrator.db"
    files = [db, db.with_name("orchestrator.db-wal"), db.with_name("orchestrator.db-shm")]
    assert all(path.exists() for path in files)  # WAL: the console's connections hold them open
    assert {path.name: stat.S_IMODE(path.stat().st_mode) for path in files} == {
        path.name: 0o600 for path in files
    }


def test_an_old_world_readable_state_database_is_made_private(tmp_path: Path) -> None:
    db = tmp_path / "orchestrator.db"
    db.touch(mode=0o644)
    db.chmod(0o644)
    open_database(db, "CREATE TABLE IF NOT EXISTS t (x);").close()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
