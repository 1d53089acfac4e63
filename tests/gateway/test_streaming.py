"""Bodies stream through the gateway both ways, byte for byte, as they are produced.

The host is the real orchestrator API (the cascade profile where a chat model is needed) with
its LLM's ``chat`` held between deltas, so a test knows the host has not finished when the
first event reaches the client. Where the test must see the host's side of an upload byte by
byte, a small aiohttp app stands for the host instead and says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from orchestrator.app.runtime import Runtime
from orchestrator.config import AppConfig, GatewayConfig
from orchestrator.config.secrets import Secrets
from orchestrator.gateway.app import create_gateway_app
from services.base import ChatUsage
from tests.gateway.clients import AUTH, sdk
from tests.gateway.conftest import HOST_KEY, StackFactory, base
from tests.gateway.scripted_gate import ScriptedGate


def hold_chat(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """``runtime``'s LLM says "Two", then waits for the returned event before the rest."""
    release = asyncio.Event()

    async def held_chat(
        messages: list[dict[str, str]],
        *,
        options: dict[str, Any] | None = None,
        usage: ChatUsage | None = None,
    ) -> AsyncGenerator[str, None]:
        yield "Two"
        await release.wait()
        yield " plus two is four."

    monkeypatch.setattr(runtime.fleet.engine("llm"), "chat", held_chat)
    return release


async def test_chat_events_reach_the_client_while_the_host_still_generates(
    make_stack: StackFactory, cascade_config: AppConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = await make_stack(cascade_config, ready=True)
    release = hold_chat(stack.runtime, monkeypatch)
    async with sdk(stack) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "2+2?"}], stream=True
        )
        chunks = aiter(stream)
        async with asyncio.timeout(60):  # a buffering proxy would wait here for the whole reply
            first = await anext(chunks)
            second = await anext(chunks)
        assert first.choices[0].delta.role == "assistant"
        assert second.choices[0].delta.content == "Two"
        assert stack.gate.open["request"] == 1  # the request is still in flight, and counted
        release.set()
        rest = [c.choices[0].delta.content async for c in chunks]
    assert "".join(r for r in rest if r) == " plus two is four."
    await stack.gate.until(lambda: stack.gate.open["request"] == 0)


async def test_a_host_that_dies_mid_stream_breaks_the_client_s_body(
    make_stack: StackFactory, cascade_config: AppConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = await make_stack(cascade_config, ready=True)
    release = hold_chat(stack.runtime, monkeypatch)
    body = {"model": "llm", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(stack.url + "/v1/chat/completions", json=body, headers=AUTH) as response,
        ):
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/event-stream"
            async with asyncio.timeout(60):
                while b'"Two"' not in await response.content.readline():
                    pass
            stack.cable.cut()
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.content.read()  # never a clean end of a cut reply
    finally:
        release.set()  # the host's handler ends too
    await stack.gate.until(lambda: len(stack.gate.lost) == 1)
    assert "POST /v1/chat/completions" in stack.gate.lost[0]


async def test_speech_streams_back_byte_for_byte(
    make_stack: StackFactory, tiny_config: AppConfig
) -> None:
    stack = await make_stack(tiny_config, ready=True)
    body = {
        "model": "tts-1",
        "voice": "alloy",
        "input": "One. Two. Three.",
        "response_format": "wav",
    }
    async with aiohttp.ClientSession() as http:
        async with http.post(stack.url + "/v1/audio/speech", json=body, headers=AUTH) as through:
            assert through.status == 200
            assert through.headers["Content-Type"] == "audio/wav"
            assert through.headers["Transfer-Encoding"] == "chunked"  # streamed, not buffered
            assert "Content-Length" not in through.headers
            chunks = [chunk async for chunk in through.content.iter_any()]
        async with http.post(
            base(stack.host) + "/v1/audio/speech",
            json=body,
            headers={"Authorization": f"Bearer {HOST_KEY}"},
        ) as direct:
            expected = await direct.read()
    assert b"".join(chunks) == expected and expected[:4] == b"RIFF"


@pytest.fixture
async def upload_host(aiohttp_server: Any) -> AsyncIterator[tuple[TestServer, asyncio.Event]]:
    """Stands for the host where the test must see an upload arrive part by part: it reads
    the first part, says so, then the rest, and echoes what it was sent."""
    got_first = asyncio.Event()

    async def upload(request: web.Request) -> web.Response:
        first = await request.content.readany()
        got_first.set()
        rest = await request.content.read()
        return web.json_response(
            {"bytes": len(first) + len(rest), "headers": dict(request.headers)},
            headers={
                "X-Voice-Waking": "tts",
                "Keep-Alive": "timeout=5",
                "Connection": "keep-alive",
            },
        )

    app = web.Application()
    app.router.add_post("/v1/upload", upload)
    server: TestServer = await aiohttp_server(app)
    yield server, got_first


async def test_an_upload_streams_to_the_host_before_it_is_whole(
    upload_host: tuple[TestServer, asyncio.Event], aiohttp_server: Any, secrets: Secrets
) -> None:
    host, got_first = upload_host
    gate = ScriptedGate(base(host), HOST_KEY)
    gate.become_ready()
    gateway: TestServer = await aiohttp_server(create_gateway_app(gate, GatewayConfig(), secrets))

    async def body() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        async with asyncio.timeout(30):  # a gateway that buffers the upload never gets here
            await got_first.wait()
        yield b"b" * 1000

    headers = {**AUTH, "X-Trace": "t-1", "Connection": "keep-alive, X-Hop", "X-Hop": "no"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(base(gateway) + "/v1/upload?lang=en", data=body(), headers=headers) as response,
    ):
        assert response.status == 200
        assert response.headers["X-Voice-Waking"] == "tts"  # the host's own, passed on
        assert "Keep-Alive" not in response.headers
        echoed = await response.json()
    assert echoed["bytes"] == 2000
    seen = {name.lower(): value for name, value in echoed["headers"].items()}
    assert seen["authorization"] == f"Bearer {HOST_KEY}"
    assert seen["x-trace"] == "t-1" and "x-hop" not in seen
    assert seen["x-forwarded-for"] == "127.0.0.1" and seen["x-forwarded-proto"] == "http"
