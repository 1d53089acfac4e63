"""``/v1/duplex`` through the gateway: silent until the host's handshake, then relayed.

The host is the real orchestrator API serving PersonaPlex's protocol from the tiny cascade
(as in tests/test_duplex.py), behind a cable the test can cut. The client does what
PersonaPlex's clients do: Ogg Opus frames of 80 ms in, kind-prefixed messages out.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import numpy as np
import sphn

from orchestrator.config import AppConfig
from tests.gateway.clients import AUTH
from tests.gateway.conftest import Stack, StackFactory

RATE, FRAME = 24_000, 1920
QUERY = "/v1/duplex?text_prompt=You%20are%20a%20kind%20tutor.&voice_prompt=NATF2.pt"


async def send_silence(ws: aiohttp.ClientWebSocketResponse, writer: Any, frames: int) -> int:
    """``frames`` frames of silence as the client's Ogg stream; how many messages went."""
    sent = 0
    for _ in range(frames):
        encoded = writer.append_pcm(np.zeros(FRAME, dtype=np.float32))
        if encoded:
            await ws.send_bytes(b"\x01" + encoded)
            sent += 1
    return sent


async def connect(stack: Stack, http: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
    return await http.ws_connect(stack.url + QUERY, headers=AUTH)


async def test_nothing_before_the_host_s_handshake_then_frames_both_ways(
    make_stack: StackFactory, cascade_config: AppConfig
) -> None:
    stack = await make_stack(cascade_config, writer=True)
    gate = stack.gate
    writer = sphn.OpusStreamWriter(RATE)
    async with aiohttp.ClientSession() as http:
        ws = await connect(stack, http)
        await gate.until(lambda: gate.waiting == 1)
        assert gate.open["session"] == 1
        early = await send_silence(ws, writer, 25)  # 2 s the client spoke too soon: kept
        assert early > 0
        gate.become_ready()
        first = await ws.receive(timeout=60)
        # the first thing the client ever gets is the host's handshake: no waking, nothing
        assert first.type is aiohttp.WSMsgType.BINARY and first.data == b"\x00"
        replayed = await ws.receive(timeout=60)  # the host answers the frames kept for it
        assert replayed.type is aiohttp.WSMsgType.BINARY and replayed.data[:1] in (b"\x01", b"\x02")
        assert await send_silence(ws, writer, 5) > 0
        relayed = await ws.receive(timeout=60)
        assert relayed.type is aiohttp.WSMsgType.BINARY and relayed.data[:1] in (b"\x01", b"\x02")
        assert len(stack.runtime.session_summaries()) == 1
        await ws.close()
    await gate.until(lambda: gate.open["session"] == 0)
    assert gate.uses == ["session"]


async def test_a_host_that_dies_mid_session_closes_1011(
    make_stack: StackFactory, cascade_config: AppConfig
) -> None:
    stack = await make_stack(cascade_config, writer=True, ready=True)
    async with aiohttp.ClientSession() as http:
        ws = await connect(stack, http)
        assert (await ws.receive(timeout=60)).data == b"\x00"
        stack.cable.cut()
        while (message := await ws.receive(timeout=30)).type is aiohttp.WSMsgType.BINARY:
            pass  # frames already on their way
        assert message.type is aiohttp.WSMsgType.CLOSE and message.data == 1011
        assert message.extra == "host lost"
    assert len(stack.gate.lost) == 1 and "duplex session" in stack.gate.lost[0]


async def test_a_missing_persona_is_400_before_the_upgrade_and_wakes_nothing(
    make_stack: StackFactory, tiny_config: AppConfig
) -> None:
    stack = await make_stack(tiny_config)
    async with (
        aiohttp.ClientSession() as http,
        http.get(stack.url + "/v1/duplex?voice_prompt=NATF2.pt", headers=AUTH) as response,
    ):
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["code"] == "invalid_input" and "text_prompt" in error["message"]
    assert stack.gate.ready_calls == 0 and stack.gate.uses == []
