"""Bad input and limits on the WebSockets: ``/v1/duplex`` and the size limit of ``/v1/realtime``.

Each case asserts what the client sees (an ``error`` event, a close code with its reason, a
status before the upgrade) and that a following session is served. The cascade serves the
duplex sessions (no duplex engine is configured); every engine is real and tiny.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import numpy as np
import pytest
import sphn
from aiohttp.test_utils import TestServer

from orchestrator.api.app import create_api_app
from orchestrator.app.runtime import Runtime
from orchestrator.config import AppConfig
from tests.conftest import API_KEY, RuntimeFactory
from tests.realtime_client import connect

AUTH = {"Authorization": f"Bearer {API_KEY}"}
DUPLEX = "/v1/duplex?text_prompt=You%20are%20a%20tutor."
OVER = 2 << 20  # past the duplex route's limit and an append's, within what aiohttp reads whole
# past the Realtime route's largest message (an input_image of [api] max_image_bytes, 5 MiB,
# as base64: 7 MB) and within what aiohttp reads whole
OVER_REALTIME = 8 << 20


def with_sessions(config: AppConfig, **sessions: Any) -> AppConfig:
    return config.model_copy(update={"sessions": config.sessions.model_copy(update=sessions)})


@pytest.fixture
async def make_server(
    make_runtime: RuntimeFactory, cascade_config: AppConfig, aiohttp_server: Any
) -> Any:
    async def make(**sessions: Any) -> TestServer:
        runtime: Runtime = make_runtime(with_sessions(cascade_config, **sessions), writer=True)
        server: TestServer = await aiohttp_server(create_api_app(runtime))
        return server

    return make


async def open_duplex(server: TestServer, http: aiohttp.ClientSession) -> Any:
    ws = await http.ws_connect(f"http://{server.host}:{server.port}{DUPLEX}", headers=AUTH)
    handshake = await asyncio.wait_for(ws.receive(), timeout=60)
    assert handshake.type is aiohttp.WSMsgType.BINARY and handshake.data == b"\x00"
    return ws


async def closed(ws: Any, timeout: float = 30) -> aiohttp.WSMessage:
    """The close frame the server sends (data: the code, extra: the reason)."""
    async with asyncio.timeout(timeout):
        while True:
            message = await ws.receive()
            if message.type is not aiohttp.WSMsgType.BINARY:
                return message


async def test_duplex_message_over_the_limit_closes_1009(make_server: Any) -> None:
    server = await make_server()
    async with aiohttp.ClientSession() as http:
        ws = await open_duplex(server, http)
        await ws.send_bytes(b"\x01" + bytes(OVER))
        message = await closed(ws)
        assert message.type is aiohttp.WSMsgType.CLOSE, message
        assert message.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        assert "over the limit of 1048576" in message.extra
        again = await open_duplex(server, http)  # the server serves the next session
        await again.close()


async def test_realtime_message_over_the_limit_says_why_and_closes_1009(
    make_server: Any,
) -> None:
    server = await make_server()
    async with aiohttp.ClientSession() as http:
        socket = await connect(server, http)
        await socket.until("session.created")
        # an append over [sessions] max_append_bytes: refused, and the session goes on
        await socket.ws.send_str(
            json.dumps({"type": "input_audio_buffer.append", "audio": "A" * OVER})
        )
        error = await socket.until("error")
        assert (error["error"]["code"], error["error"]["param"]) == ("invalid_input", "audio")
        assert "an append carries at most" in error["error"]["message"]
        await socket.ws.send_str(json.dumps({"type": "input_audio_buffer.clear"}))
        await socket.until("input_audio_buffer.cleared")
        # a message over the route's own limit: said, and the socket closed with 1009
        await socket.ws.send_str(
            json.dumps({"type": "input_audio_buffer.append", "audio": "A" * OVER_REALTIME})
        )
        error = await socket.until("error")
        assert error["error"]["code"] == "message_too_big"
        assert "over the limit" in error["error"]["message"]
        message = await closed(socket.ws)
        assert message.type is aiohttp.WSMsgType.CLOSE, message
        assert message.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        again = await connect(server, http)
        await again.until("session.created")
        await again.ws.close()


async def test_duplex_sessions_per_key_are_limited(make_server: Any) -> None:
    """Realtime and duplex sessions count together against ``sessions.max_per_key``."""
    server = await make_server(max_per_key=1)
    async with aiohttp.ClientSession() as http:
        first = await open_duplex(server, http)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await open_duplex(server, http)
        assert refused.value.status == 429
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await connect(server, http)
        assert refused.value.status == 429
        await first.close()
        second = await open_duplex(server, http)  # the slot was given back
        await second.close()
        socket = await connect(server, http)
        await socket.until("session.created")
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await open_duplex(server, http)
        assert refused.value.status == 429
        await socket.ws.close()


async def test_duplex_session_ends_at_max_minutes(make_server: Any) -> None:
    server = await make_server(max_minutes=0.01)  # 0.6 s
    async with aiohttp.ClientSession() as http:
        ws = await open_duplex(server, http)
        message = await closed(ws)
        assert message.type is aiohttp.WSMsgType.CLOSE, message
        assert message.data == aiohttp.WSCloseCode.OK
        assert "session limit of 0.01 minutes" in message.extra
        again = await open_duplex(server, http)
        await again.close()


async def test_duplex_ignores_junk_and_keeps_the_session(make_server: Any) -> None:
    """Text, unknown kinds, empty and undecodable audio: ignored, as the real server does."""
    server = await make_server()
    async with aiohttp.ClientSession() as http:
        ws = await open_duplex(server, http)
        await ws.send_str("hello")
        await ws.send_bytes(b"")
        await ws.send_bytes(b"\x07junk")
        await ws.send_bytes(b"\x01not ogg at all")
        await ws.send_bytes(b"\x02text from the client")
        writer = sphn.OpusStreamWriter(24_000)
        for _ in range(10):  # good audio after the junk (its first page may be lost with it)
            encoded = writer.append_pcm(np.zeros(1920, dtype=np.float32))
            if encoded:
                await ws.send_bytes(b"\x01" + encoded)
        answer = await asyncio.wait_for(ws.receive(), timeout=60)
        assert answer.type is aiohttp.WSMsgType.BINARY and answer.data[:1] == b"\x01", answer
        await ws.close()
        assert ws.close_code == aiohttp.WSCloseCode.OK
