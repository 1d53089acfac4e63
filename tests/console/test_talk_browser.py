"""The Talk page in a real headless Chromium whose microphone plays a WAV file made here
(``--use-file-for-fake-audio-capture``): the operator holds the button, the page sends the
microphone as PCM16 through the console's relay to ``/v1/realtime`` of the tiny real cascade
(Silero VAD, Whisper and Piper; the LLM says one scripted sentence, ``tests.console.voice``),
and the reply is heard: its audio arrives, its buffers play to the end, its words are shown,
and the turn's latency is shown. Hands-free lets the server's VAD
find the turn and shows the server's stage timings too. Screenshots, desktop and phone, go with
the other pages' (``test-artifacts/screenshots/talk-*.png``).

Needs ``chromium`` and ``playwright`` (skips without, saying why); the hands-free test needs
``espeak-ng`` for speech the VAD hears.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from orchestrator.config import AppConfig
from tests.conftest import RuntimeFactory
from tests.console.browser import Console, chromium, chromium_path, fake_microphone
from tests.console.voice import RATE, SAID, Voice, serve_voice, voiced, wav_bytes
from tests.speech import silence, speak

try:
    chromium_path()
    missing = ""
except LookupError as exc:
    missing = str(exc)
pytestmark = pytest.mark.skipif(bool(missing), reason=missing)

REPLY_MS = 180_000  # the first turn loads every tiny engine on a shared 2-core machine


@pytest.fixture
async def voice(
    cascade_config: AppConfig, make_runtime: RuntimeFactory, aiohttp_server: Any
) -> Voice:
    return await serve_voice(cascade_config, make_runtime, aiohttp_server)


def expect(target: Any) -> Any:
    from playwright.async_api import expect as playwright_expect

    return playwright_expect(target)


def at_least(least: int) -> re.Pattern[str]:
    """A pattern for the whole numbers from ``least`` up (the page's CSP forbids evaluating a
    condition in it, so the wait matches the counter's text)."""
    digits = str(least)
    options = [rf"[1-9]\d{{{len(digits)},}}", digits]  # more digits, or exactly it
    for i, digit in enumerate(digits):
        if digit != "9":
            rest = len(digits) - i - 1
            options.append(rf"{digits[:i]}[{int(digit) + 1}-9]\d{{{rest}}}")
    return re.compile(rf"^(?:{'|'.join(options)})$")


async def stat_at_least(console: Console, name: str, least: int, timeout_ms: int) -> None:
    """Wait until the counter ``data-<name>`` of ``#talk-stats`` reaches ``least``."""
    stats = console.page.locator("#talk-stats")
    await expect(stats).to_have_attribute(f"data-{name}", at_least(least), timeout=timeout_ms)


async def test_hold_to_talk_sends_the_microphone_and_plays_the_reply(
    voice: Voice, tmp_path: Path
) -> None:
    wav = tmp_path / "microphone.wav"
    wav.write_bytes(wav_bytes(np.concatenate([voiced(2.0), silence(0.5, RATE)])))
    async with chromium(voice.base, fake_microphone(wav)) as console:
        page = console.page
        await console.sign_in("/talk")
        await expect(page.locator("#talk-state")).to_have_text("idle")

        await page.locator("#talk-hold").hover()
        await page.mouse.down()
        await expect(page.locator("#talk-hold")).to_have_attribute("aria-pressed", "true")
        await stat_at_least(console, "sent-ms", 1500, REPLY_MS)  # the mic's frames went out
        await page.mouse.up()

        latency = page.locator('#talk-latency tr[data-turn="1"] td.latency')
        await expect(latency).to_have_attribute("data-ms", re.compile(r"^\d+$"), timeout=REPLY_MS)
        await stat_at_least(console, "received-ms", 1, REPLY_MS)
        await stat_at_least(console, "played", 1, REPLY_MS)  # a reply buffer played to its end
        turn = page.locator('#talk-transcript li[data-turn="1"]')
        await expect(turn.locator(".bot span")).to_have_text(SAID, timeout=REPLY_MS)
        await expect(turn.locator(".user span")).not_to_have_text("…", timeout=REPLY_MS)
        assert await page.locator("#talk-latency td.mode").all_inner_texts() == ["hold"]

        session = voice.runtime.session_summaries()
        assert len(session) == 1 and session[0]["backend"] == "cascade"
        await expect(page.locator("#frag-sessions")).to_contain_text(session[0]["id"])
        viewport, document = await console.screenshot("talk")
        assert viewport == document, f"talk is {document} px wide on a {viewport} px phone"

        await page.click("#talk-end")
        await expect(page.locator("#talk-state")).to_have_text("idle")
        await voice.ended.get()  # the page's session closed on the server too
        console.expect_no_errors()


async def test_hands_free_the_server_hears_the_turn_and_times_its_stages(
    voice: Voice, tmp_path: Path
) -> None:
    speech = speak("Hello teacher, what is two plus two?", RATE)
    wav = tmp_path / "speech.wav"
    wav.write_bytes(wav_bytes(np.concatenate([silence(0.5, RATE), speech, silence(1.0, RATE)])))
    async with chromium(voice.base, fake_microphone(wav, loop=False)) as console:
        page = console.page
        await console.sign_in("/talk")
        await page.click("#talk-handsfree")
        await expect(page.locator("#talk-handsfree")).to_have_attribute("aria-pressed", "true")
        await expect(page.locator("#talk-hold")).to_be_disabled()

        row = page.locator('#talk-latency tr[data-turn="1"]')
        await expect(row.locator("td.mode")).to_have_text("hands-free", timeout=REPLY_MS)
        await expect(row.locator("td.latency")).to_have_attribute(
            "data-ms", re.compile(r"^\d+$"), timeout=REPLY_MS
        )
        await expect(row.locator("td.stages")).to_contain_text("first audio", timeout=REPLY_MS)
        await stat_at_least(console, "played", 1, REPLY_MS)
        user = page.locator('#talk-transcript li[data-turn="1"] .user span')
        await expect(user).not_to_have_text("…", timeout=REPLY_MS)
        await console.screenshot("talk-hands-free")
        console.expect_no_errors()
