"""``python -m orchestrator console unlock``: an operator on the host ends sign-in lock-outs, with
the server running, through the CLI entry point; and the CLI's own requests are not locked out
by another local client's flood."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from console.app import create_console_app
from console.context import CONSOLE
from orchestrator.app.runtime import Runtime
from orchestrator.cli import main
from orchestrator.commands import console_client
from tests.conftest import CONSOLE_PASSWORD
from tests.console.conftest import Client
from tests.helpers import basic

ADMIN = basic("admin", CONSOLE_PASSWORD)


async def lock_out(client: Client, user: str) -> None:
    for _ in range(10):
        assert (await client.get("/api/state", headers=basic(user, "guess"))).status == 401
    assert (await client.get("/api/state", headers=basic(user, "guess"))).status == 429


def unlock(tmp_path: Path, *extra: str) -> None:
    assert main(["console", "unlock", "--config", str(tmp_path / "console.toml"), *extra]) == 0


async def test_unlock_ends_a_lock_out_of_one_user_or_all(
    client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await lock_out(client, "admin")
    await lock_out(client, "root")
    assert (await client.get("/api/state", headers=ADMIN)).status == 429

    unlock(tmp_path, "--user", "admin")
    out = capsys.readouterr().out
    assert "cleared 10 failed sign-in(s) of 'admin' from address:127.0.0.1" in out
    assert "root" not in out
    assert (await client.get("/api/state", headers=ADMIN)).status == 200
    assert (await client.get("/api/state", headers=basic("root", "x"))).status == 429

    unlock(tmp_path)
    out = capsys.readouterr().out
    assert "cleared 10 failed sign-in(s) of 'root' from address:127.0.0.1" in out
    assert (await client.get("/api/state", headers=basic("root", "x"))).status == 401

    unlock(tmp_path)
    assert "cleared 1 failed sign-in(s) of 'root'" in capsys.readouterr().out  # the one above
    unlock(tmp_path)
    assert capsys.readouterr().out == "no failed sign-ins to clear\n"
    entries = client.app[CONSOLE].audit.recent(limit=4)
    assert [(e.action, e.via, e.target, e.details) for e in entries] == [
        ("unlock", "cli", "", {"cleared": 0}),
        ("unlock", "cli", "", {"cleared": 1}),
        ("login", "basic", "", {"source": "address:127.0.0.1"}),
        ("unlock", "cli", "", {"cleared": 10}),
    ]


def test_unlock_before_the_first_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "console.toml"
    config.write_text(f'profile = "cpu"\n[state]\ndir = "{tmp_path / "state"}"\n')
    assert main(["console", "unlock", "--config", str(config), "--user", "admin"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("no state database at ") and "no failed sign-ins of admin" in out
    assert not (tmp_path / "state").exists()


async def test_the_cli_is_not_locked_out_by_another_local_client(
    client: Client, runtime: Runtime, aiohttp_server: Any
) -> None:
    server = await aiohttp_server(create_console_app(runtime, environ={}))
    config = runtime.config.model_copy(
        update={"server": runtime.config.server.model_copy(update={"console_port": server.port})}
    )
    secrets_file = config.state.dir / "console_password"
    secrets_file.write_text(CONSOLE_PASSWORD + "\n")
    secrets_file.chmod(0o600)
    await lock_out(client, "admin")  # a local process without the device cookie
    woken = await asyncio.to_thread(console_client.post, config, "/api/hibernation/wake")
    assert woken["state"] == "active"
