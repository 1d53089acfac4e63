"""Debian's headless Chromium driven by Playwright (async API), for the console's browser tests.

Playwright's wheel carries its own driver; the browser is the system's ``chromium`` (or
``$VO_CHROMIUM``), started with ``executable_path``: ``playwright install`` is never needed.
Playwright's async API runs on the test's event loop beside the console under test, and its
``expect`` waits for a condition to hold (no sleeps).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tests.conftest import CONSOLE_PASSWORD

if TYPE_CHECKING:
    from playwright.async_api import ConsoleMessage, Page, ViewportSize

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("VO_SCREENSHOTS") or ROOT / "test-artifacts" / "screenshots")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
WAIT_MS = 10_000
written: list[Path] = []  # screenshots saved in this run, for the summary at the end


def chromium_path() -> str:
    """The browser to drive; raises ``LookupError`` saying why the tests cannot run here."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        raise LookupError("playwright is not installed (pip install -e '.[dev]')") from None
    browser = os.environ.get("VO_CHROMIUM") or shutil.which("chromium")
    if not browser or not Path(browser).exists():
        raise LookupError("chromium is missing (scripts/browser-deps.sh installs it)")
    return browser


class Console:
    """One signed-out browser tab on the console at ``base``; collects script errors."""

    def __init__(self, page: Page, base: str) -> None:
        self.page = page
        self.base = base
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.set_default_timeout(WAIT_MS)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} at {message.location}")

    async def goto(self, path: str) -> None:
        await self.page.goto(self.base + path)

    async def sign_in(self, path: str) -> None:
        """Ask for ``path``, get the sign-in form, sign in, and land on ``path`` with the
        live stream open."""
        from playwright.async_api import expect

        await self.goto(path)
        await expect(self.page).to_have_url(re.compile(r"/login\?next="))
        await self.page.fill('input[name="password"]', CONSOLE_PASSWORD)
        await self.page.click('button[type="submit"]')
        await expect(self.page).to_have_url(self.base + path)
        await self.live()

    async def live(self) -> None:
        """Wait until the page's event stream is open (so later changes will reach it)."""
        from playwright.async_api import expect

        await expect(self.page.locator("#live")).to_have_text("live")

    async def mark(self) -> None:
        """Tag this document, so ``same_document()`` tells whether the page was reloaded."""
        await self.page.evaluate("window.__sameDocument = true")

    async def same_document(self) -> bool:
        return bool(await self.page.evaluate("window.__sameDocument === true"))

    async def screenshot(self, name: str) -> tuple[int, int]:
        """Save ``<name>-desktop.png`` and ``<name>-phone.png`` (whole page); returns the
        phone page's (viewport width, document width), equal when nothing overflows."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        widths = (0, 0)
        for form, size in (("desktop", DESKTOP), ("phone", PHONE)):
            await self.page.set_viewport_size(size)
            await self.page.evaluate("new Promise(r => requestAnimationFrame(() => r(null)))")
            path = SHOTS / f"{name}-{form}.png"
            await self.page.screenshot(path=str(path), full_page=True)
            written.append(path)
            if form == "phone":
                found = await self.page.evaluate(
                    "[window.innerWidth, document.documentElement.scrollWidth]"
                )
                widths = (int(found[0]), int(found[1]))
        await self.page.set_viewport_size(DESKTOP)
        return widths

    def expect_no_errors(self) -> None:
        """Scripts ran without errors and nothing broke the Content-Security-Policy."""
        assert not self.errors, self.errors


def fake_microphone(wav: Path, *, loop: bool = True) -> list[str]:
    """Flags for a microphone that plays ``wav`` (again and again, or once and then silence),
    granted without asking, and audio that may play without a click first."""
    return [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}{'' if loop else '%noloop'}",
        "--autoplay-policy=no-user-gesture-required",
    ]


@asynccontextmanager
async def chromium(base: str, extra: Sequence[str] = ()) -> AsyncIterator[Console]:
    """A fresh headless Chromium with one tab on the console at ``base``; ``extra`` flags."""
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        args = [*FLAGS, *extra]
        browser = await driver.chromium.launch(executable_path=chromium_path(), args=args)
        try:
            context = await browser.new_context(viewport=DESKTOP)
            yield Console(await context.new_page(), base)
        finally:
            await browser.close()
