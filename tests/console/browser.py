"""A small async face on selenium driving Debian's headless Chromium, for the console's tests.

Selenium blocks, and the console under test runs on the test's event loop, so every browser
call runs in a worker thread (``asyncio.to_thread``) while the loop goes on serving.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.conftest import CONSOLE_PASSWORD

T = TypeVar("T")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
)
WAIT_S = 10.0


def chromium_paths() -> tuple[str, str] | str:
    """(browser, driver), or why the browser tests cannot run here."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    browser = os.environ.get("VO_CHROMIUM") or shutil.which("chromium")
    driver = os.environ.get("VO_CHROMEDRIVER") or shutil.which("chromedriver")
    if not browser or not driver or not (Path(browser).exists() and Path(driver).exists()):
        return "chromium and chromium-driver are missing (scripts/browser-deps.sh installs them)"
    return browser, driver


def start_chromium(browser: str, driver: str, profile: Path) -> Any:
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium must not look for downloads
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver))


class Browser:
    def __init__(self, driver: Any, base: str) -> None:
        self.driver = driver
        self.base = base

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(call, *args)

    async def get(self, path: str) -> None:
        await self.run(self.driver.get, self.base + path)

    async def script(self, code: str) -> Any:
        return await self.run(self.driver.execute_script, code)

    def _wait(self, condition: Callable[[Any], Any], what: str) -> Any:
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.driver, WAIT_S, poll_frequency=0.05).until(condition)
        except TimeoutException:
            where = self.driver.current_url
            raise AssertionError(f"waited {WAIT_S:g} s for {what} on {where}") from None

    async def wait_css(self, selector: str) -> Any:
        from selenium.webdriver.common.by import By

        def found(driver: Any) -> Any:
            elements = driver.find_elements(By.CSS_SELECTOR, selector)
            return elements[0] if elements else False

        return await self.run(self._wait, found, selector)

    async def wait_text(self, selector: str, text: str) -> None:
        from selenium.webdriver.common.by import By

        def shows(driver: Any) -> bool:
            elements = driver.find_elements(By.CSS_SELECTOR, selector)
            return bool(elements) and text in elements[0].text

        await self.run(self._wait, shows, f"{text!r} in {selector}")

    async def count(self, selector: str) -> int:
        from selenium.webdriver.common.by import By

        return len(await self.run(self.driver.find_elements, By.CSS_SELECTOR, selector))

    async def click(self, selector: str, *, confirm: bool = False) -> None:
        element = await self.wait_css(selector)
        await self.run(element.click)
        if confirm:
            from selenium.webdriver.support import expected_conditions

            alert = await self.run(self._wait, expected_conditions.alert_is_present(), "confirm")
            await self.run(alert.accept)

    async def fill(self, selector: str, value: str) -> None:
        element = await self.wait_css(selector)
        await self.run(element.clear)
        await self.run(element.send_keys, value)

    async def send_file(self, selector: str, path: Path) -> None:
        element = await self.wait_css(selector)
        await self.run(element.send_keys, str(path))

    async def sign_in(self, path: str) -> None:
        await self.get(path)
        await self.wait_css('input[name="password"]')
        await self.fill('input[name="password"]', CONSOLE_PASSWORD)
        await self.click('button[type="submit"]')
        await self.wait_css("header.top")
        assert self.driver.current_url == self.base + path

    async def screenshot(self, width: int, *, mobile: bool) -> bytes:
        """The whole page at ``width`` CSS pixels (a phone's viewport when ``mobile``)."""

        def shoot() -> bytes:
            metrics = {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": mobile}
            self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
            height = self.driver.execute_script(
                "return new Promise(r => requestAnimationFrame(() => requestAnimationFrame("
                "() => r(document.documentElement.scrollHeight))))"
            )
            metrics["height"] = min(int(height), 6000)
            self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
            self.driver.execute_script(
                "return new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
            )
            shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
            return base64.b64decode(shot["data"])

        return await self.run(shoot)

    async def forget_console(self) -> None:
        """Drop the console log so far (after errors a test caused on purpose)."""
        await self.run(self.driver.get_log, "browser")

    async def expect_no_console_errors(self) -> None:
        """Scripts ran without errors and nothing broke the Content-Security-Policy."""
        entries = await self.run(self.driver.get_log, "browser")
        errors = [e["message"] for e in entries if e["level"] == "SEVERE"]
        assert not errors, errors
