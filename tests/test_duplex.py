"""``/v1/duplex``: a PersonaPlex-protocol client, served by the cascade.

The client here does what PersonaPlex's own clients do (wait for the 0x00 handshake, stream
0x01 Ogg Opus frames of 80 ms continuously, read 0x01 audio and 0x02 text back), with sphn for
Ogg Opus as the reference client uses. Speech comes from espeak-ng; every engine is real and tiny.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import numpy as np
import pytest
import sphn
from aiohttp.test_utils import TestServer

from orchestrator.api.app import create_api_app
from orchestrator.app.runtime import Runtime
from tests.conftest import API_KEY
from tests.speech import silence, speak

RATE, FRAME = 24_000, 1920
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
async def server(cascade_runtime: Runtime, aiohttp_server: Any) -> TestServer:
    server: TestServer = await aiohttp_server(create_api_app(cascade_runtime))
    return server


def url(server: TestServer, query: str) -> str:
    return f"http://{server.host}:{server.port}/v1/duplex?{query}"


async def test_a_persona_conversation_over_the_personaplex_protocol(server: TestServer) -> None:
    writer, reader = sphn.OpusStreamWriter(RATE), sphn.OpusStreamReader(RATE)
    audio = np.concatenate(
        [speak("Hello, can you help me with fractions?", RATE), silence(1.5, RATE)]
    )
    texts: list[str] = []
    heard: list[np.ndarray] = []
    sent_frames = 0
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(
            url(server, "text_prompt=You%20are%20a%20maths%20tutor.&voice_prompt=NATF2.pt"),
            headers=AUTH,
        )
        first = await ws.receive()
        assert first.type is aiohttp.WSMsgType.BINARY and first.data == b"\x00"

        frames = [audio[i : i + FRAME] for i in range(0, len(audio) - FRAME + 1, FRAME)]
        quiet = np.zeros(FRAME, dtype=np.float32)
        for index in range(600):  # stream continuously, as clients do: speech, then silence
            frame = frames[index] if index < len(frames) else quiet
            encoded = writer.append_pcm(frame.astype(np.float32))
            sent_frames += 1
            if not encoded:
                continue
            await ws.send_bytes(b"\x01" + encoded)
            while True:  # lockstep: each input frame is answered by one output frame
                message = await asyncio.wait_for(ws.receive(), timeout=30)
                kind, payload = message.data[0], message.data[1:]
                if kind == 0x02:
                    texts.append(payload.decode())
                    continue
                pcm = reader.append_bytes(payload)
                if pcm is not None and len(pcm):
                    heard.append(pcm)
                break
            if texts and heard and np.abs(np.concatenate(heard)).max() > 0.01:
                break
        await ws.close()
    assert texts, "the reply's text arrives as 0x02 messages"
    assert np.abs(np.concatenate(heard)).max() > 0.01, "the reply is heard, not only silence"
    received = sum(len(chunk) for chunk in heard) / FRAME
    assert received <= sent_frames  # one output frame per input frame, never more


async def test_text_prompt_is_required_and_the_key_too(server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as missing:
            await http.ws_connect(url(server, "voice_prompt=NATF2.pt"), headers=AUTH)
        assert missing.value.status == 400
        with pytest.raises(aiohttp.WSServerHandshakeError) as no_key:
            await http.ws_connect(url(server, "text_prompt=hi"))
        assert no_key.value.status == 401


async def test_garbage_audio_is_dropped_and_the_session_goes_on(server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url(server, "text_prompt=Be%20kind."), headers=AUTH)
        assert (await ws.receive()).data == b"\x00"
        await ws.send_bytes(b"\x01" + b"OggS-not-really" * 10)
        await ws.send_bytes(b"\x05ignored-kind")
        await ws.send_str("text frames are ignored")
        writer = sphn.OpusStreamWriter(RATE)
        got_audio = False
        for _ in range(40):
            encoded = writer.append_pcm(np.zeros(FRAME, dtype=np.float32))
            if encoded:
                await ws.send_bytes(b"\x01" + encoded)
                message = await asyncio.wait_for(ws.receive(), timeout=30)
                if message.type is aiohttp.WSMsgType.BINARY and message.data[:1] == b"\x01":
                    got_audio = True
                    break
        assert got_audio, "valid frames after garbage still get answered"
        await ws.close()
