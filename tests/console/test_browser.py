"""The console in a real headless Chromium (Playwright driving Debian's ``chromium``): sign in,
see the engines, act, and watch the pages change live over server-sent events without a
reload; screenshots of every page, desktop and phone, go to ``test-artifacts/screenshots/``
(or ``$VO_SCREENSHOTS``), and the run's summary prints where.

Needs ``chromium`` (``scripts/browser-deps.sh`` installs it; CI runs it) and the ``playwright``
package (the ``dev`` extra); without them these tests skip, saying why.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from console.context import CONSOLE
from orchestrator.app.runtime import Runtime
from orchestrator.core.idle import IdleState
from services.base import Engine, Role
from tests.console import managed
from tests.console.browser import Console, chromium, chromium_path
from tests.console.seed import seed_charts, seed_history
from tests.fakes import FakeClock, FakeEngine

try:
    chromium_path()
    missing = ""
except LookupError as exc:
    missing = str(exc)
pytestmark = pytest.mark.skipif(bool(missing), reason=missing)

PAGES = {
    "overview": "/",
    "engines": "/engines",
    "hibernation": "/hibernation",
    "credits": "/credits",
    "plan": "/plan",
    "audit": "/audit",
}


@pytest.fixture
def extra_toml() -> str:
    return managed.TOML


@pytest.fixture
def engines() -> dict[str, Engine]:
    return {
        "asr": FakeEngine("asr", Role.ASR),
        "tts": FakeEngine("tts", Role.TTS),
        "llm": managed.ManagedFakeEngine("llm"),
    }


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=time.time())  # real dates on the screenshots


@pytest.fixture
async def console(
    runtime: Runtime, console_app: Any, aiohttp_server: Any, clock: FakeClock
) -> AsyncIterator[Console]:
    seed_history(runtime, clock)
    server = await aiohttp_server(console_app)
    base = f"http://127.0.0.1:{server.port}"
    console_app[CONSOLE].origins = frozenset({base})  # server.console_public_origin
    async with chromium(base) as tab:
        yield tab
        tab.expect_no_errors()


def expect(target: Any) -> Any:
    from playwright.async_api import expect as playwright_expect

    return playwright_expect(target)


async def test_engines_load_unload_and_logs_change_live(
    console: Console, runtime: Runtime, engines: dict[str, Any]
) -> None:
    page = console.page
    await console.sign_in("/engines")
    await expect(page.locator("tr[data-engine]")).to_have_count(3)
    await console.mark()

    llm = page.locator('tr[data-engine="llm"]')
    await expect(llm).to_have_attribute("data-state", "unloaded")
    await page.click('button[data-post="/api/engines/llm/load"]')
    await expect(llm).to_have_attribute("data-state", "loaded")
    await expect(llm.locator(".process")).to_contain_text("process ready")

    # The server process's output follows live: first its start-up lines, then a new one.
    log = page.locator('details.log[data-log="llm"] pre')
    await expect(log).to_contain_text("fake llm server: listening")
    await expect(log.locator(".stderr")).to_contain_text("no GPU")
    engines["llm"].poke()
    await expect(log).to_contain_text("poked 1")

    await page.click('button[data-post="/api/engines/llm/unload"]')
    await expect(llm).to_have_attribute("data-state", "unloaded")
    await expect(log).to_contain_text("stopped")  # the supervisor's own line

    # A change made on the server, not in this page, arrives by the stream too, even while the
    # focus sits on a button of the table (as it does right after a click).
    await page.focus('button[data-post="/api/engines/tts/load"]')
    await runtime.fleet.load("tts")
    await expect(page.locator('tr[data-engine="tts"]')).to_have_attribute("data-state", "loaded")
    assert await console.same_document()  # never reloaded


async def test_hibernate_now_moves_the_ladder(console: Console, runtime: Runtime) -> None:
    page = console.page
    await console.sign_in("/")
    await console.mark()
    await expect(page.locator(".ladder .step.current")).to_have_attribute("data-state", "active")
    page.once("dialog", lambda dialog: dialog.accept())
    await page.click("#hibernate-now")
    await expect(page.locator(".ladder .step.current")).to_have_attribute("data-state", "cold")
    await expect(page.locator("#hib-state")).to_have_attribute("data-state", "cold")
    assert runtime.hibernator.state is IdleState.COLD

    await runtime.hibernator.force(IdleState.ACTIVE, cause="a voice request")
    await expect(page.locator(".ladder .step.current")).to_have_attribute("data-state", "active")
    assert await console.same_document()
    await console.goto("/audit")
    await expect(page.locator("#frag-audit_table")).to_contain_text("hibernate")


async def test_settings_and_simulator_forms(console: Console, tmp_path: Path) -> None:
    page = console.page
    await console.sign_in("/hibernation")
    await page.fill('input[name="warm_after_s"]', "45")
    await page.click('#settings button[type="submit"]')
    await expect(page.locator("#settings-result")).to_contain_text("Takes effect on restart")

    await console.goto("/credits")
    await simulate(console, tmp_path)
    assert await page.evaluate("!!window.Chart && !!Chart.getChart('daily-chart')")


async def simulate(console: Console, folder: Path) -> None:
    """Upload a week of three classes a day to the simulator and wait for its table."""
    day, start = 86400, int(time.time()) - 7 * 86400
    starts = [start + d * day + h * 3600 for d in range(7) for h in (9, 14, 19)]
    trace = folder / "week.csv"
    trace.write_text("start,end\n" + "".join(f"{at},{at + 2400}\n" for at in starts))
    await console.page.set_input_files('#simulate input[type="file"]', trace)
    await console.page.click('#simulate button[type="submit"]')
    await expect(console.page.locator("#simulation-table tbody tr")).to_have_count(
        15
    )  # 5 of today, 10 of the gateway


async def test_screenshots_of_every_page(
    console: Console,
    console_app: Any,
    runtime: Runtime,
    clock: FakeClock,
    engines: dict[str, Any],
    tmp_path: Path,
) -> None:
    """Every page with plausible data, desktop and phone; on a phone nothing is wider than
    the screen."""
    page = console.page
    seed_charts(console_app[CONSOLE].history, clock)
    await runtime.fleet.load("asr")
    await runtime.fleet.load("llm")
    engines["llm"].poke()
    runtime.pin("asr", True)
    await console.goto("/login")
    await console.screenshot("login")
    await console.sign_in("/")
    for action in ("hibernation/keep-awake", "engines/asr/pin", "engines/tts/unload"):
        await page.evaluate(f"VO.post('/api/{action}', {{}}).catch(e => e.message)")
    console.errors.clear()  # the refused unload's 409, asked for
    for name, path in PAGES.items():
        await console.goto(path)
        await console.live()
        if name == "overview":
            for chart, line in (("gpu-chart", 0), ("latency-chart", 1)):
                drawn = f"Chart.getChart('{chart}').data.datasets[{line}].data.length"
                assert await page.evaluate(drawn) > 100, chart
        if name == "engines":
            await expect(page.locator('details.log[data-log="llm"] pre')).to_contain_text("poked 1")
        if name == "credits":
            await simulate(console, tmp_path)
        viewport, document = await console.screenshot(name)
        assert viewport == document, f"{name} is {document} px wide on a {viewport} px phone"
