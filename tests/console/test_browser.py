"""The console in a real headless Chromium: sign in, see the engines, act, and watch the pages
change live over server-sent events without a reload; screenshots of every page, desktop and
phone, go to ``build/screenshots/`` (or ``$VO_SCREENSHOTS``).

Needs Debian's ``chromium`` and ``chromium-driver`` (``scripts/browser-deps.sh`` installs them;
CI runs it) and selenium (the ``dev`` extra); without them these tests skip, saying why.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.ladder import IdleState
from orchestrator.runtime import Runtime
from tests.console.browser import Browser, chromium_paths, start_chromium
from tests.console.seed import seed_history
from tests.fakes import FakeClock

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("VO_SCREENSHOTS", ROOT / "build" / "screenshots"))
PAGES = {
    "overview": "/",
    "engines": "/engines",
    "hibernation": "/hibernation",
    "credits": "/credits",
    "plan": "/plan",
    "audit": "/audit",
}

missing = chromium_paths()
pytestmark = pytest.mark.skipif(
    isinstance(missing, str), reason=missing if isinstance(missing, str) else ""
)


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    assert not isinstance(missing, str)
    chromium = start_chromium(*missing, tmp_path_factory.mktemp("chromium-profile"))
    yield chromium
    chromium.quit()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=time.time())  # real dates on the screenshots


@pytest.fixture
async def browser(
    driver: Any, runtime: Runtime, console_app: Any, aiohttp_server: Any, clock: FakeClock
) -> AsyncIterator[Browser]:
    seed_history(runtime, clock)
    server = await aiohttp_server(console_app)
    browser = Browser(driver, f"http://127.0.0.1:{server.port}")
    await browser.run(driver.delete_all_cookies)
    yield browser
    await browser.expect_no_console_errors()
    await browser.run(driver.execute_cdp_cmd, "Emulation.clearDeviceMetricsOverride", {})


async def test_sign_in_act_and_see_changes_live(browser: Browser, runtime: Runtime) -> None:
    await browser.sign_in("/engines")
    await browser.wait_text("#live", "live")  # the event stream is open
    assert await browser.count("tr[data-engine]") == 2
    await browser.script("window.__sameDocument = true")

    await browser.click('button[data-post="/api/engines/tts/load"]')
    await browser.wait_css('tr[data-engine="tts"][data-state="loaded"]')
    await browser.click('button[data-post="/api/engines/tts/unload"]')
    await browser.wait_css('tr[data-engine="tts"][data-state="unloaded"]')

    await browser.get("/")
    await browser.wait_text("#live", "live")
    await browser.script("window.__sameDocument = true")
    await browser.click("#hibernate-now", confirm=True)
    await browser.wait_css('.ladder .step.current[data-state="cold"]')
    await browser.wait_css('#hib-state[data-state="cold"]')
    assert runtime.hibernator.state is IdleState.COLD

    # A change made on the server, not in this page, arrives by the stream too.
    await runtime.hibernator.force(IdleState.ACTIVE, cause="a voice request")
    await browser.wait_css('.ladder .step.current[data-state="active"]')
    assert await browser.script("return window.__sameDocument === true")  # never reloaded
    await browser.get("/audit")
    await browser.wait_text("#frag-audit_table", "hibernate")


async def test_settings_and_simulator_forms(browser: Browser, tmp_path: Path) -> None:
    await browser.sign_in("/hibernation")
    await browser.fill('input[name="warm_after_s"]', "45")
    await browser.click('#settings button[type="submit"]')
    await browser.wait_text("#settings-result", "Takes effect on restart")

    await browser.get("/credits")
    await simulate(browser, tmp_path)
    assert await browser.script("return !!window.Chart && !!Chart.getChart('daily-chart')")


async def simulate(browser: Browser, folder: Path) -> None:
    """Upload a week of three classes a day to the simulator and wait for its table."""
    day, start = 86400, int(time.time()) - 7 * 86400
    starts = [start + d * day + h * 3600 for d in range(7) for h in (9, 14, 19)]
    rows = [f"{at},{at + 2400}" for at in starts]
    trace = folder / "week.csv"
    trace.write_text("start,end\n" + "\n".join(rows) + "\n")
    await browser.send_file('#simulate input[type="file"]', trace)
    await browser.click('#simulate button[type="submit"]')
    await browser.wait_css("#simulation-table tbody tr:nth-child(5)")


async def test_screenshots_of_every_page(
    browser: Browser, runtime: Runtime, tmp_path: Path
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await runtime.fleet.load("asr")
    runtime.pin("asr", True)
    await browser.get("/login")
    for width, form in ((1280, "desktop"), (390, "phone")):
        png = await browser.screenshot(width, mobile=form == "phone")
        (SHOTS / f"login-{form}.png").write_bytes(png)
    await browser.run(browser.driver.execute_cdp_cmd, "Emulation.clearDeviceMetricsOverride", {})
    await browser.sign_in("/")
    for action in ("hibernation/keep-awake", "engines/asr/pin", "engines/tts/unload"):
        await browser.script(f"return VO.post('/api/{action}', {{}}).catch(e => e.message)")
    await browser.forget_console()  # the refused unload's 409, asked for
    for name, path in PAGES.items():
        await browser.get(path)
        await browser.wait_text("#live", "live")
        if name == "credits":
            await simulate(browser, tmp_path)
        for width, form in ((1280, "desktop"), (390, "phone")):
            png = await browser.screenshot(width, mobile=form == "phone")
            (SHOTS / f"{name}-{form}.png").write_bytes(png)
            widths = await browser.script(
                "return [window.innerWidth, document.documentElement.scrollWidth]"
            )
            assert widths == [width, width], f"{name} is wider than {width} px: {widths}"
    assert len(list(SHOTS.glob("*.png"))) >= 14
