"""The gateway console in a real headless Chromium: sign in, press Start and Stop, and watch
the host's state, history and money follow over the live stream without a reload; screenshots
(desktop and phone) go beside the server console's. Skips, saying why, without ``chromium``
or ``playwright`` (as ``tests/console/test_browser.py`` does)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from console.context import CONSOLE
from orchestrator.config.secrets import Secrets
from orchestrator.gateway.console import create_gateway_console
from orchestrator.gateway.controller import HostController
from tests.conftest import CONSOLE_PASSWORD
from tests.console.browser import Console, chromium, chromium_path
from tests.gateway.hosted import gateway_config, hosted, seed_visits
from tests.gateway.scripted_provider import Clock, ScriptedProvider

try:
    chromium_path()
    missing = ""
except LookupError as exc:
    missing = str(exc)
pytestmark = pytest.mark.skipif(bool(missing), reason=missing)


def expect(target: Any) -> Any:
    from playwright.async_api import expect as playwright_expect

    return playwright_expect(target)


def lessons(now: float) -> list[tuple[float, float]]:
    """Four weeks of weekday afternoon lessons and a Saturday morning, before ``now``."""
    day = 86400.0
    midnight = now - now % day
    visits = []
    for back in range(1, 29):
        start = midnight - back * day
        weekday = time.gmtime(start).tm_wday
        hours = (16.0, 17.25, 18.5) if weekday < 5 else (9.5,) if weekday == 5 else ()
        for k, hour in enumerate(hours):
            if (back + k) % 4:  # most weeks, not all
                visits.append((start + hour * 3600, start + hour * 3600 + 1500))
    return visits


@pytest.fixture
async def tab(
    tmp_path: Path, aiohttp_server: Any
) -> AsyncIterator[tuple[Console, HostController, ScriptedProvider]]:
    config = gateway_config(tmp_path)
    now = time.time()
    provider, clock = ScriptedProvider(), Clock(now)  # real dates on the screenshots
    seed_visits(tmp_path, lessons(now))  # a learned week for the heat map
    secrets = Secrets(api_keys=("a-voice-key",), console_password=CONSOLE_PASSWORD)
    async with hosted(config, provider, clock) as controller:
        app = create_gateway_console(controller, config, secrets, environ={}, clock=clock)
        server = await aiohttp_server(app)
        base = f"http://127.0.0.1:{server.port}"
        app[CONSOLE].origins = frozenset({base})  # the test server's port, not 8767
        async with chromium(base) as console:
            yield console, controller, provider
            console.expect_no_errors()


async def test_start_and_stop_from_the_page_follow_live(
    tab: tuple[Console, HostController, ScriptedProvider],
) -> None:
    console, controller, provider = tab
    page = console.page
    await console.sign_in("/")
    await console.mark()
    state = page.locator("#host-state")
    await expect(state).to_have_attribute("data-state", "stopped")
    await expect(page.locator("#host-stop")).to_be_disabled()

    provider.start_gate = asyncio.Event()  # the machine takes its time to come up
    await page.click("#host-start")
    await expect(state).to_have_attribute("data-state", "starting")
    await expect(page.locator("#host-eta")).to_contain_text("Ready in about")
    await console.screenshot("gateway-host-waking")
    provider.start_gate.set()
    await expect(state).to_have_attribute("data-state", "ready")
    await expect(page.locator("#host-history")).to_contain_text("booting → ready")
    await expect(page.locator("#frag-audit_table")).to_contain_text("host_start")
    assert provider.starts == 1
    phone_width, page_width = await console.screenshot("gateway-host-ready")
    assert page_width <= phone_width, "the page overflows a phone's width"

    page.once("dialog", lambda dialog: dialog.accept())
    await page.click("#host-stop")
    await expect(state).to_have_attribute("data-state", "stopped")
    await expect(page.locator("#host-start")).to_be_enabled()
    assert provider.stops == 1
    provider.start_gate = None
    await controller.wake("app")  # asked elsewhere (the front door): it shows here too
    await expect(state).to_have_attribute("data-state", "ready")
    assert await console.same_document()  # never reloaded
