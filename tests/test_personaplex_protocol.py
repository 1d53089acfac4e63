"""The PersonaPlex wire protocol: our client against tests/peers/personaplex_peer.py (a real
process with tiny random Moshi models), and misbehaving raw clients to show why the order
matters and why we never hold two connections to one server."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx
import numpy as np
import pytest
import sphn

from services import duplex_protocol as protocol
from services.base import AudioOut, Persona, TextOut
from services.duplex_client import (
    ConnectionBusy,
    ConnectionSlot,
    HandshakeTimeout,
    PersonaPlexConnection,
    SessionEnded,
    connect,
    make_persona,
)
from services.errors import InvalidInput
from tests.conftest import free_port
from tests.peers.personaplex_peer import VOICES, make_voice_dir, server_args
from tests.peers.watch import start_peer, stop_peer

FRAME = protocol.FRAME_SAMPLES
PERSONA = Persona("You are a patient maths tutor.", "NATF2.pt")
BOB = Persona("You are Bob, a gruff sailor.", "NATM1.pt")
CAROL = Persona("You are Carol, a chess coach.", "NATF2.pt")
SAMPLES: dict[type[Any], Any] = {
    protocol.Handshake: protocol.Handshake(),
    protocol.Audio: protocol.Audio(b"OggS\x00\x02page"),
    protocol.Text: protocol.Text(" hello ▁ wörld"),
    protocol.Control: protocol.Control(1),
    protocol.Metadata: protocol.Metadata({"a": [1, 2]}),
    protocol.Error: protocol.Error("boom"),
    protocol.Ping: protocol.Ping(),
}


@pytest.fixture(scope="module")
def peer_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("personaplex-peer")
    port = free_port()
    voices = make_voice_dir(tmp / "voices")
    process = start_peer(
        "tests.peers.personaplex_peer", server_args(port, voices), {}, port, tmp / "peer.log"
    )
    yield f"http://127.0.0.1:{port}"
    stop_peer(process)


def peer_state(url: str) -> dict[str, Any]:
    with httpx.Client(trust_env=False) as client:
        state: dict[str, Any] = client.get(f"{url}/peer/state").json()
    return state


async def peer_reaches(url: str, **counters: int) -> None:
    """Wait until each peer counter has reached its value (the peer answers then)."""
    async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
        response = await client.get(f"{url}/peer/wait", params=counters)
        response.raise_for_status()


def as_dict(persona: Persona) -> dict[str, str]:
    return {"voice": persona.voice_prompt, "text": persona.text_prompt}


async def dial(url: str, persona: Persona, **options: Any) -> PersonaPlexConnection:
    """``connect`` with a slot of its own: a client of its own, as another program would be."""
    return await connect(url, persona, slot=ConnectionSlot(url), **options)


async def converse(connection: PersonaPlexConnection, frames: int) -> tuple[int, list[str]]:
    """Stream ``frames`` frames of quiet noise in real time and collect what comes back."""
    received, texts = 0, []

    async def listen() -> None:
        nonlocal received
        while True:
            output = await connection.receive()
            if isinstance(output, AudioOut):
                received += len(output.pcm)
            else:
                texts.append(output.text)

    listener = asyncio.create_task(listen())
    rng = np.random.default_rng(0)
    for _ in range(frames):
        await connection.send_frame((rng.standard_normal(FRAME) * 0.01).astype(np.float32))
    await connection.drain_tail(10.0)
    listener.cancel()
    await asyncio.gather(listener, return_exceptions=True)
    return received, texts


def test_every_message_kind_round_trips() -> None:
    classes = [
        cls
        for _name, cls in inspect.getmembers(protocol, inspect.isclass)
        if dataclasses.is_dataclass(cls) and hasattr(cls, "KIND")
    ]
    assert set(classes) == set(protocol.MESSAGE_CLASSES)
    for cls in classes:
        assert cls in SAMPLES, f"{cls.__name__} has no round-trip sample"
        message = SAMPLES[cls]
        assert protocol.decode(message.encode()) == message
    assert sorted(cls.KIND for cls in classes) == list(range(7))


@pytest.mark.parametrize("data", [b"", b"\x09abc", b"\x03", b"\x04not json"])
def test_bad_messages_are_protocol_errors(data: bytes) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(data)


def test_ogg_pages_split_a_writer_chunk_at_page_boundaries() -> None:
    writer = sphn.OpusStreamWriter(protocol.SAMPLE_RATE)
    chunk = writer.append_pcm(np.zeros(FRAME, dtype=np.float32))
    pages = protocol.ogg_pages(chunk)
    assert b"".join(pages) == chunk and len(pages) >= 3
    assert all(page.startswith(b"OggS") for page in pages)
    assert protocol.starts_with_opus_head(pages[0])
    assert not protocol.starts_with_opus_head(pages[-1])


def test_a_persona_is_checked_before_it_reaches_the_server() -> None:
    assert make_persona(" Be kind. ", None, VOICES, "NATF2.pt") == Persona("Be kind.", "NATF2.pt")
    with pytest.raises(InvalidInput, match="text_prompt"):
        make_persona("  ", "NATF2.pt", VOICES, "NATF2.pt")
    with pytest.raises(InvalidInput, match=r"NATF2\.pt, NATM1\.pt"):
        make_persona("Be kind.", "VARM9.pt", VOICES, "NATF2.pt")
    assert "seed" not in PERSONA.query()


async def test_plain_get_answers_400_like_the_real_server(peer_url: str) -> None:
    async with httpx.AsyncClient(trust_env=False) as client:
        assert (await client.get(f"{peer_url}/api/chat")).status_code == 400


async def test_handshake_then_one_output_frame_per_input_frame(peer_url: str) -> None:
    connection = await dial(peer_url, PERSONA, handshake_timeout_s=30)
    try:
        received, texts = await converse(connection, 20)
    finally:
        await connection.close()
    assert received == 20 * FRAME, "every 80 ms frame in is answered by one frame out"
    assert connection.samples_sent == 20 * FRAME
    assert texts and all(isinstance(t, str) for t in texts)


async def test_a_client_that_sends_before_the_handshake_loses_its_session(peer_url: str) -> None:
    before = peer_state(peer_url)
    writer = sphn.OpusStreamWriter(protocol.SAMPLE_RATE)
    audio_back = 0
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{peer_url}/api/chat", params=PERSONA.query())
        # the careless client streams at once: its OpusHead page goes into the prefill's bin
        await ws.send_bytes(b"\x01" + writer.append_pcm(np.zeros(FRAME, dtype=np.float32)))
        first = await asyncio.wait_for(ws.receive(), 30)
        assert first.data == b"\x00"
        for _ in range(5):
            await ws.send_bytes(b"\x01" + writer.append_pcm(np.zeros(FRAME, dtype=np.float32)))
        async for message in ws:
            if message.type is aiohttp.WSMsgType.BINARY and message.data[:1] == b"\x01":
                audio_back += 1
    after = peer_state(peer_url)
    assert after["early_audio"] > before["early_audio"]
    assert after["reader_died"] == before["reader_died"] + 1
    assert audio_back == 0, "the session ended right after the handshake"

    # ours waits for 0x00 before its first page, and is answered
    connection = await dial(peer_url, PERSONA)
    try:
        received, _texts = await converse(connection, 5)
    finally:
        await connection.close()
    assert received == 5 * FRAME
    assert peer_state(peer_url)["early_messages"] == after["early_messages"]


async def test_someone_elses_conversation_waits_silently_until_the_first_ends(
    peer_url: str,
) -> None:
    first = await dial(peer_url, PERSONA)
    try:
        with pytest.raises(HandshakeTimeout, match="busy"):
            await dial(peer_url, PERSONA, handshake_timeout_s=1.5)
        received, _ = await converse(first, 3)
        assert received == 3 * FRAME
    finally:
        await first.close()
    second = await dial(peer_url, PERSONA, handshake_timeout_s=30)
    await second.close()


async def test_one_slot_refuses_a_second_connection_before_a_byte_is_sent(peer_url: str) -> None:
    slot = ConnectionSlot(peer_url)
    first = await connect(peer_url, PERSONA, slot=slot)
    try:
        before = peer_state(peer_url)
        with pytest.raises(ConnectionBusy):
            await connect(peer_url, BOB, slot=slot)
        after = peer_state(peer_url)
        assert after["connections"] == before["connections"], "nothing reached the server"
        assert slot.taken and slot.refused == 1
        received, _ = await converse(first, 3)
        assert received == 3 * FRAME
    finally:
        await first.close()
    assert not slot.taken
    with pytest.raises(SessionEnded):  # a failed connect gives the slot back
        await connect(peer_url, Persona("Be kind.", "UNKNOWN.pt"), slot=slot)
    second = await connect(peer_url, BOB, slot=slot)
    await second.close()
    assert peer_state(peer_url)["prefills"][-1] == {"asked": as_dict(BOB), "used": as_dict(BOB)}


async def test_a_failed_or_cancelled_connect_gives_the_slot_back(peer_url: str) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    slot = ConnectionSlot(nowhere)
    with pytest.raises(SessionEnded, match="cannot connect"):
        await connect(nowhere, PERSONA, slot=slot)
    assert not slot.taken
    first = await dial(peer_url, PERSONA)  # someone else's: ours will wait for the handshake
    try:
        slot = ConnectionSlot(peer_url)
        before = peer_state(peer_url)["connections"]
        waiting = asyncio.create_task(connect(peer_url, BOB, slot=slot))
        await peer_reaches(peer_url, connections=before + 1)
        assert slot.taken
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert not slot.taken
    finally:
        await first.close()


async def test_the_server_starts_a_queued_client_with_the_last_clients_persona(
    peer_url: str,
) -> None:
    """What the slot guards against: PersonaPlex writes the persona before its lock."""
    before = peer_state(peer_url)
    chat = f"{peer_url}/api/chat"
    async with aiohttp.ClientSession() as http:
        first = await http.ws_connect(chat, params=PERSONA.query())
        assert (await asyncio.wait_for(first.receive(), 30)).data == b"\x00"
        bob = await http.ws_connect(chat, params=BOB.query())
        await peer_reaches(peer_url, connections=before["connections"] + 2)
        carol = await http.ws_connect(chat, params=CAROL.query())
        await peer_reaches(peer_url, connections=before["connections"] + 3)
        await first.close()
        assert (await asyncio.wait_for(bob.receive(), 30)).data == b"\x00"
        started = peer_state(peer_url)["prefills"][-1]
        assert started == {"asked": as_dict(BOB), "used": as_dict(CAROL)}
        await bob.close()
        assert (await asyncio.wait_for(carol.receive(), 30)).data == b"\x00"
        await carol.close()
    after = peer_state(peer_url)
    assert after["prefills"][-1] == {"asked": as_dict(CAROL), "used": as_dict(CAROL)}
    assert after["wrong_persona"] == before["wrong_persona"] + 1


async def test_a_refused_seed_still_leaves_its_persona_to_the_next_in_line(peer_url: str) -> None:
    """The server reads ``seed`` after writing the persona (we never send it)."""
    before = peer_state(peer_url)
    chat = f"{peer_url}/api/chat"
    async with aiohttp.ClientSession() as http:
        first = await http.ws_connect(chat, params=PERSONA.query())
        assert (await asyncio.wait_for(first.receive(), 30)).data == b"\x00"
        bob = await http.ws_connect(chat, params=BOB.query())
        await peer_reaches(peer_url, connections=before["connections"] + 2)
        seeded = await http.ws_connect(chat, params={**CAROL.query(), "seed": "42"})
        closing = await asyncio.wait_for(seeded.receive(), 30)  # at once, though busy
        assert closing.type is aiohttp.WSMsgType.CLOSE
        await first.close()
        assert (await asyncio.wait_for(bob.receive(), 30)).data == b"\x00"
        await bob.close()
    state = peer_state(peer_url)
    assert state["rejected"][-1] == "KeyError: 'seed'"
    assert state["prefills"][-1] == {"asked": as_dict(BOB), "used": as_dict(CAROL)}


async def test_a_rejected_persona_closes_without_a_handshake_even_while_busy(
    peer_url: str,
) -> None:
    """The server checks the voice and reads ``seed`` before its lock: no waiting in line."""
    first = await dial(peer_url, PERSONA)
    try:
        with pytest.raises(SessionEnded, match="before the handshake"):
            await dial(peer_url, Persona("Be kind.", "UNKNOWN.pt"), handshake_timeout_s=10)
        assert peer_state(peer_url)["rejected"][-1].startswith("FileNotFoundError")
        async with aiohttp.ClientSession() as http:  # what a client that sends `seed` gets
            params = {**PERSONA.query(), "seed": "42"}
            ws = await http.ws_connect(f"{peer_url}/api/chat", params=params)
            message = await asyncio.wait_for(ws.receive(), 10)
            assert message.type is aiohttp.WSMsgType.CLOSE
        assert peer_state(peer_url)["rejected"][-1] == "KeyError: 'seed'"
    finally:
        await first.close()


async def test_bad_frames_from_a_client_are_skipped_and_the_session_goes_on(peer_url: str) -> None:
    before = peer_state(peer_url)
    writer = sphn.OpusStreamWriter(protocol.SAMPLE_RATE)
    reader = sphn.OpusStreamReader(protocol.SAMPLE_RATE)
    heard = 0
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{peer_url}/api/chat", params=PERSONA.query())
        assert (await asyncio.wait_for(ws.receive(), 30)).data == b"\x00"
        await ws.send_bytes(b"\x01" + writer.append_pcm(np.zeros(FRAME, dtype=np.float32)))
        await ws.send_bytes(b"\x05an error kind")
        await ws.send_bytes(b"")
        await ws.send_str("text frames are not read")
        await ws.send_bytes(b"\x01" + writer.append_pcm(np.zeros(FRAME, dtype=np.float32)))
        while heard < 2 * FRAME:  # both good frames are answered despite the junk between
            message = await asyncio.wait_for(ws.receive(), 30)
            if message.data[:1] == b"\x01":
                heard += len(reader.append_bytes(message.data[1:]))
        await ws.close()
    assert peer_state(peer_url)["unknown_kinds"] == before["unknown_kinds"] + 1


async def test_the_client_skips_what_it_cannot_use() -> None:
    class Socket:
        closed = False

    socket: Any = Socket()
    connection = PersonaPlexConnection(socket, aiohttp.ClientSession(), name="t", tail_s=0.1)
    try:
        for junk in (b"", b"\x09?", b"\x05error", b"\x06", b"\x00"):
            assert connection._output(junk) is None
        assert connection._output(b"\x02 hi") == TextOut(" hi")
        writer = sphn.OpusStreamWriter(protocol.SAMPLE_RATE)
        pages = protocol.ogg_pages(writer.append_pcm(np.zeros(FRAME, dtype=np.float32)))
        decoded = [connection._output(b"\x01" + page) for page in pages]
        assert decoded[:2] == [None, None]  # header pages carry no audio
        assert all(isinstance(d, AudioOut) for d in decoded[2:])
        assert connection.ignored == 5
    finally:
        await connection._http.close()


def test_persona_query_is_url_safe() -> None:
    persona = Persona("You are Ana & you teach 1+1=2?", "NATF2.pt")
    url = httpx.URL("http://x/api/chat", params=persona.query())
    assert httpx.URL(str(url)).params["text_prompt"] == persona.text_prompt
