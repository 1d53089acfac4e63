"""A state-changing request's ``Origin`` is checked against the console's public origin (set in
``server.console_public_origin``, or derived from where the console listens), never against the
``Host`` header the client chose."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.origin import allowed_origins
from orchestrator.config import AppConfig, ConfigError, ServerConfig, load_config
from tests.conftest import CONSOLE_PASSWORD
from tests.console.conftest import NO_LLM, Client
from tests.helpers import basic

ADMIN = basic("admin", CONSOLE_PASSWORD)
WAKE = "/api/hibernation/wake"


async def test_an_origin_from_elsewhere_with_a_forged_host_is_refused(client: Client) -> None:
    forged = {**ADMIN, "Origin": "http://evil.example", "Host": "evil.example"}
    refused = await client.post(WAKE, json={}, headers=forged)
    assert refused.status == 403
    assert "http://127.0.0.1:8766" in (await refused.json())["error"]  # what it expected
    # The test server's own address is not the configured console either.
    own = {**ADMIN, "Origin": f"http://127.0.0.1:{client.port}"}
    assert (await client.post(WAKE, json={}, headers=own)).status == 403


@pytest.mark.parametrize(
    "origin", ["http://127.0.0.1:8766", "http://localhost:8766", "http://[::1]:8766"]
)
async def test_the_loopback_origins_of_the_console_port_are_its_own(
    client: Client, origin: str
) -> None:
    response = await client.post(WAKE, json={}, headers={**ADMIN, "Origin": origin})
    assert response.status == 200, await response.text()


async def test_a_request_without_origin_still_goes_through(client: Client) -> None:
    assert (await client.post(WAKE, json={}, headers=ADMIN)).status == 200  # the CLI sends none


PUBLIC = NO_LLM + '[server]\nconsole_public_origin = "HTTPS://VO.Example:443/"\n'


@pytest.mark.parametrize("extra_toml", [PUBLIC])  # the console's config, for these tests
async def test_a_configured_public_origin_is_the_only_one(
    client: Client, console_config: AppConfig
) -> None:
    assert console_config.server.console_public_origin == "https://vo.example"  # normalised
    ok = {**ADMIN, "Origin": "https://vo.example", "Host": "vo.example"}
    assert (await client.post(WAKE, json={}, headers=ok)).status == 200
    for origin in ("http://vo.example", "https://vo.example:8443", "http://127.0.0.1:8766"):
        response = await client.post(WAKE, json={}, headers={**ADMIN, "Origin": origin})
        assert response.status == 403, origin


@pytest.mark.parametrize(
    "value",
    [
        "console.example.com",
        "ftp://console.example.com",
        "https://console.example.com/console",
        "https://admin:pw@console.example.com",
        "https://console.example.com?x=1",
        "https://console.example.com:99999",
        "https://",
    ],
)
def test_a_bad_public_origin_is_refused_at_start(tmp_path: Path, value: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f"[server]\nconsole_public_origin = {value!r}\n")
    reason = r"server\.console_public_origin: .*(is not an|has more than)"
    with pytest.raises(ConfigError, match=reason):
        load_config(config_file=path, environ={})


def test_a_trusted_proxy_needs_the_public_origin(tmp_path: Path) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text("[server]\nconsole_trust_proxy = true\n")
    with pytest.raises(ConfigError, match="console_public_origin"):
        load_config(config_file=path, environ={})


def test_origins_derived_from_the_bind_address() -> None:
    assert allowed_origins(ServerConfig(console_host="10.0.0.5", console_port=9000)) == {
        "http://10.0.0.5:9000"
    }
    assert allowed_origins(ServerConfig(console_host="fd00::5")) == {"http://[fd00::5]:8766"}
    assert allowed_origins(ServerConfig(console_host="0.0.0.0")) == {
        "http://127.0.0.1:8766",
        "http://localhost:8766",
        "http://[::1]:8766",
    }


def test_the_example_config_documents_the_public_origin(tmp_path: Path) -> None:
    example = Path(__file__).parents[2] / "config" / "example.toml"
    lines = example.read_text().splitlines()
    line = next(text for text in lines if text.startswith("# console_public_origin = "))
    path = tmp_path / "user.toml"
    path.write_text("[server]\n" + line.removeprefix("# "))
    config = load_config(config_file=path, environ={})
    assert config.server.console_public_origin == "https://console.example.com"
