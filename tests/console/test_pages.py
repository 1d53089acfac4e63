"""Every console page renders what it promises, static files are served behind the login, and
nothing the console does counts as voice activity."""

from __future__ import annotations

import tomllib
from pathlib import Path

from orchestrator.app.runtime import Runtime
from orchestrator.core.idle import IdleState
from tests.console.conftest import Client
from tests.console.test_auth import PAGES
from tests.fakes import FakeClock

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "console" / "static"


async def page(client: Client, path: str) -> str:
    response = await client.get(path)
    assert response.status == 200, path
    assert response.headers["Cache-Control"] == "no-store"
    return await response.text()


async def test_overview_shows_the_ladder_credits_and_engines(
    client: Client, csrf: dict[str, str], runtime: Runtime, clock: FakeClock
) -> None:
    clock.advance(12)
    html = await page(client, "/")
    assert 'class="step current" data-state="active"' in html
    assert 'class="step next" data-state="warm"' in html
    assert f'data-until="{runtime.clock() + 18}"' in html  # the countdown to WARM
    assert "Credits left" in html and "$500.00" in html
    assert 'data-engine="asr"' in html and 'data-engine="tts"' in html
    assert "of 24.00 GiB (simulated GPU)" in html  # the simulated GPU's bar
    assert "No open voice sessions" in html
    assert '<canvas id="gpu-chart"' in html and '<canvas id="latency-chart"' in html
    assert 'id="history-data" data-step="60.0" data-keep="21600.0">[]</script>' in html
    assert "No voice turns yet." in html and "overview.js?v=" in html


async def test_engines_page_lists_each_engine_with_its_actions(
    client: Client, csrf: dict[str, str], runtime: Runtime
) -> None:
    await runtime.fleet.load("tts")
    runtime.pin("tts", True)
    html = await page(client, "/engines")
    for text in ("faster-whisper", "piper", "in-process", 'data-label="VRAM"', "0.01 s"):
        assert text in html
    assert 'data-post="/api/engines/asr/load"' in html
    assert "data-body='{\"pinned\": false}'>Unpin</button>" in html  # tts is pinned
    assert 'data-engine="tts" data-state="loaded"' in html


async def test_hibernation_page_shows_settings_actions_and_the_timeline(
    client: Client, csrf: dict[str, str], runtime: Runtime
) -> None:
    await runtime.fleet.load("tts")
    await runtime.hibernator.force(IdleState.COOL, cause="operator hibernate")
    html = await page(client, "/hibernation")
    assert 'name="cool_after_s"' in html and 'value="300.0"' in html
    assert "park tts, duplex" in html  # what COOL does, from the configuration
    assert "active → cool" in html
    # the fake TTS cannot park: COOL unloaded it instead, and says so
    assert "unload tts: cannot park (its adapter has no parked state): unloaded instead" in html
    assert "RAM freed 0 MiB" in html
    assert 'id="hibernate-now"' in html and 'id="wake-now"' in html


async def test_credits_page_has_the_daily_chart_costs_and_simulator(
    client: Client, csrf: dict[str, str], runtime: Runtime, clock: FakeClock
) -> None:
    runtime.ledger.host_on(clock() - 3 * 86400)
    runtime.ledger.heartbeat(clock())
    html = await page(client, "/credits")
    assert '<canvas id="daily-chart"' in html
    assert "chart.umd.min.js?v=" in html
    assert 'id="simulate"' in html
    daily = await (await client.get("/api/credits/daily?days=5")).json()
    assert len(daily["days"]) == 5
    assert sum(d["billed_hours"] for d in daily["days"]) == 72.0
    assert daily["days"][-2]["billed_hours"] == 24.0
    assert daily["days"][-2]["cost_usd"] == 19.2
    assert "$57.60" in html  # three days at $0.80/h


async def test_audit_page_lists_operator_actions(client: Client, csrf: dict[str, str]) -> None:
    await client.post("/api/hibernation/hibernate", json={"state": "cold"}, headers=csrf)
    html = await page(client, "/audit")
    assert "<strong>hibernate</strong>" in html
    assert "<strong>login</strong>" in html
    assert "(session)" in html


async def test_static_files_are_served_behind_the_login(
    client: Client, csrf: dict[str, str]
) -> None:
    scripts = ("console.js", "credits.js", "hibernation.js", "overview.js", "engines.js", "talk.js")
    scripts += ("talk-worklet.js",)
    for name in (*scripts, "console.css", "chart.umd.min.js"):
        response = await client.get(f"/static/{name}")
        assert response.status == 200, name
        assert response.headers["Cache-Control"] == "private, max-age=86400"
    chart = (STATIC / "chart.umd.min.js").read_text()[:200]
    assert "Chart.js v4.6.1" in chart
    assert "MIT License" in (STATIC / "chart.js-LICENSE.md").read_text()


def test_package_data_ships_templates_and_static_files() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["console"]
    shipped = {p for pattern in patterns for p in (ROOT / "console").glob(pattern)}
    wanted = {p for p in (ROOT / "console").rglob("*") if p.is_file()} - set(
        (ROOT / "console").rglob("*.py")
    )
    wanted = {p for p in wanted if "__pycache__" not in p.parts}
    assert wanted <= shipped, sorted(str(p) for p in wanted - shipped)


async def test_console_traffic_is_never_voice_activity(
    client: Client, csrf: dict[str, str], runtime: Runtime, clock: FakeClock
) -> None:
    """Reads, the live stream and even operator actions leave the idle time running."""
    activity = runtime.hibernator.ladder.last_activity
    stream = await client.get("/events?view=overview")
    await stream.content.readuntil(b"\n\n")
    for _ in range(3):
        clock.advance(15)
        for path in PAGES:
            await page(client, path)
        for path in ("/api/state", "/api/snapshot", "/api/credits", "/api/audit", "/api/plan"):
            assert (await client.get(path)).status == 200
        await client.post("/api/engines/asr/pin", json={"pinned": False}, headers=csrf)
        await client.post("/api/engines/asr/load", json={}, headers=csrf)
        await client.post("/api/engines/asr/unload", json={}, headers=csrf)
        runtime.hibernator.tick()
        await runtime.hibernator.settled()
    assert runtime.hibernator.ladder.last_activity == activity
    assert runtime.hibernation_summary()["idle_s"] == 45
    assert runtime.hibernator.state is IdleState.WARM
    stream.close()


class _Open:
    """An open session as the runtime's registry holds it: something that describes itself."""

    def __init__(self, summary: dict[str, object]) -> None:
        self._summary = summary

    def summary(self) -> dict[str, object]:
        return self._summary


async def test_overview_lists_cascade_and_duplex_sessions_with_their_failovers(
    client: Client, csrf: dict[str, str], runtime: Runtime
) -> None:
    cascade = {"id": "sess_c", "backend": "cascade", "opened_at": runtime.clock(), "turns": 3}
    moved = {"source": "duplex", "target": "cascade", "reason": "the server hangs", "gap_s": 1.25}
    duplex = {
        "id": "sess_d",
        "protocol": "duplex",
        "backend": "cascade",
        "opened_at": runtime.clock(),
        "failovers": [moved],
    }
    runtime.sessions.update({"sess_c": _Open(cascade), "sess_d": _Open(duplex)})
    html = await page(client, "/")
    assert "cascade · 3 turns" in html
    assert "cascade (duplex)" in html and "moved to the cascade after 1.25 s" in html
    assert 'title="the server hangs"' in html
