"""Managed processes' output on the engines page: the last lines with the page, then every new
line over ``/events/logs`` as the process writes it, a process started later included."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import ClientResponse

from orchestrator.app.runtime import Runtime
from services.base import Engine, Role
from tests.console import managed
from tests.console.conftest import Client
from tests.console.test_live import next_message
from tests.fakes import FakeEngine


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


async def lines_until(stream: ClientResponse, text: str) -> list[dict[str, Any]]:
    """The lines the stream sends, up to the first that ends with ``text``."""
    seen = []
    while True:
        kind, line = await next_message(stream)
        assert kind == "line"
        seen.append(line)
        if line["text"].endswith(text):
            return seen


async def test_a_process_started_later_is_followed_live(
    client: Client, csrf: dict[str, str], runtime: Runtime, engines: dict[str, Any]
) -> None:
    html = await (await client.get("/engines")).text()
    assert 'data-log="llm"' in html and "the process has not started" in html
    assert 'data-log="asr"' not in html  # in-process engines have no process output
    stream = await client.get("/events/logs")
    assert stream.headers["Content-Type"] == "text/event-stream"
    await client.post("/api/engines/llm/load", json={}, headers=csrf)
    first = await lines_until(stream, "listening")
    assert {line["engine"] for line in first} == {"llm"}
    assert [line["seq"] for line in first] == sorted(line["seq"] for line in first)
    assert any(line["stream"] == "supervisor" for line in first)
    engines["llm"].poke()
    poked = (await lines_until(stream, "poked 1"))[-1]
    assert poked["seq"] > first[-1]["seq"]
    stream.close()


async def test_the_page_and_a_new_stream_carry_the_last_lines(
    client: Client, csrf: dict[str, str], runtime: Runtime, engines: dict[str, Any]
) -> None:
    await runtime.fleet.load("llm")
    engines["llm"].poke()
    stream = await client.get("/events/logs")
    backlog = await lines_until(stream, "poked 1")  # the backlog, up to the newest line
    html = await (await client.get("/engines")).text()
    for line in backlog:
        assert f'data-seq="{line["seq"]}"' in html
    assert 'class="line stderr"' in html  # stderr is told apart
    assert "process ready" in html and "1 start" in html
    stream.close()
