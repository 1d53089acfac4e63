"""``/v1/duplex`` passes Ogg Opus on instead of decoding and encoding it again.

In: the duplex engine hears the client's own Ogg stream, byte for byte, counted from its pages'
granule positions; it is decoded only when the audio is wanted (the cascade, or the frames
kept while a failover runs), mid-stream if need be. Out: the client gets the engine's
own pages and, after a failover, ours, spliced into one Ogg stream (``services.ogg``) that one
reader decodes from start to end. Ogg Opus is sphn's, as the real clients and server use it.
"""

from __future__ import annotations

import asyncio
import struct
from contextlib import AsyncExitStack
from typing import Any, cast

import numpy as np
import pytest
import sphn

from orchestrator.api.duplex import DuplexSocket
from orchestrator.duplex.backends import SILENCE, DuplexBackend
from orchestrator.duplex.session import DuplexSession
from services.base import Output, Pcm
from services.duplex_protocol import FRAME_SAMPLES, SAMPLE_RATE
from services.errors import EngineCallError
from services.ogg import OggCounter, OggError, OggSplicer, ogg_crc, split_pages

FRAME = FRAME_SAMPLES


def tone(frames: int, start: int = 0, hz: float = 330.0) -> Pcm:
    t = (np.arange(frames * FRAME) + start * FRAME) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def encoded(pcm: Pcm) -> list[bytes]:
    """``pcm`` as sphn's writer sends it, one message per 80 ms frame."""
    writer = sphn.OpusStreamWriter(SAMPLE_RATE)
    return [writer.append_pcm(pcm[at : at + FRAME]) for at in range(0, len(pcm), FRAME)]


def fields(page: bytes) -> tuple[int, int, int, int]:
    """flags, granule position, serial number, page sequence number."""
    granule, serial, sequence = struct.unpack_from("<qII", page, 6)
    return page[5], granule, serial, sequence


def check_one_stream(data: bytes) -> None:
    """One logical Ogg stream: one BOS page, no EOS, pages numbered in order, granule positions
    never going back, every CRC right."""
    pages, rest = split_pages(data)
    assert rest == b""
    flags = [fields(page)[0] for page in pages]
    assert [f & 0x02 for f in flags].count(0x02) == 1 and flags[0] & 0x02
    assert not any(f & 0x04 for f in flags)
    assert [fields(page)[3] for page in pages] == list(range(len(pages)))
    assert len({fields(page)[2] for page in pages}) == 1
    granules = [fields(page)[1] for page in pages if fields(page)[1] != -1]
    assert granules == sorted(granules)
    for page in pages:
        blank = bytearray(page)
        blank[22:26] = bytes(4)
        assert ogg_crc(blank) == struct.unpack_from("<I", page, 22)[0]


def decoded_samples(data: bytes) -> int:
    pcm = sphn.OpusStreamReader(SAMPLE_RATE).append_bytes(data)
    return 0 if pcm is None else len(pcm)


def test_a_single_source_passes_byte_for_byte() -> None:
    messages = encoded(tone(10))
    splicer = OggSplicer()
    assert [splicer.feed(m, "engine") for m in messages] == messages


def test_a_second_source_goes_on_as_one_stream() -> None:
    first, second = encoded(tone(10)), encoded(tone(15, start=10))
    last = bytearray(second[-1])  # the second source ends its stream: the client's goes on
    last[5] |= 0x04
    last[22:26] = bytes(4)
    struct.pack_into("<I", last, 22, ogg_crc(last))
    second[-1] = bytes(last)
    splicer = OggSplicer()
    out = b"".join([splicer.feed(m, "engine") for m in first])
    out += b"".join([splicer.feed(m, "ours") for m in second])
    check_one_stream(out)
    assert decoded_samples(out) == 25 * FRAME, "one reader hears both sources, start to end"


def test_pages_may_come_in_pieces_and_garbage_is_refused() -> None:
    data = b"".join(encoded(tone(6)))
    splicer = OggSplicer()
    out = b"".join([splicer.feed(data[at : at + 50], "engine") for at in range(0, len(data), 50)])
    assert out == data
    with pytest.raises(OggError):
        splicer.feed(b"not an Ogg page, not at all", "engine")
    more = encoded(tone(8))[6:]  # the same source goes on after the refused bytes
    assert [splicer.feed(m, "engine") for m in more] == more
    with pytest.raises(OggError):
        OggSplicer().feed(more[0], "engine")  # a stream must start with its BOS page


class FakeConnection:
    """A duplex engine's connection that keeps what it is sent; ``takes_ogg`` says whether it
    has ``send_ogg`` (a connection without it gets frames)."""

    def __init__(self, *, takes_ogg: bool = True, broken: bool = False) -> None:
        self.frames: list[Pcm] = []
        self.ogg: list[tuple[bytes, int]] = []
        self.broken = broken
        self._closed = asyncio.Event()
        if takes_ogg:
            self.send_ogg = self._send_ogg

    async def send_frame(self, pcm: Pcm) -> None:
        self.frames.append(pcm)

    async def _send_ogg(self, ogg: bytes, samples: int) -> None:
        if self.broken:
            raise EngineCallError("connection closed", engine="duplex")
        self.ogg.append((ogg, samples))

    async def receive(self) -> Output:
        await self._closed.wait()
        raise EngineCallError("closed", engine="duplex")

    async def drain_tail(self) -> None:
        return None

    async def close(self) -> None:
        self._closed.set()


class Heard:
    """A front-end that keeps the audio frames it is given."""

    def __init__(self) -> None:
        self.frames: list[Pcm] = []

    async def audio(self, frame: Pcm, ogg: bytes = b"") -> None:
        self.frames.append(frame)

    async def text(self, piece: str) -> None:
        return None

    async def end(self, reason: str) -> None:
        return None


async def on_duplex(connection: FakeConnection) -> tuple[DuplexSession, Heard, DuplexBackend]:
    """A session on the duplex back-end over ``connection`` (no router, no engines)."""
    front = Heard()
    session = DuplexSession(
        cast(Any, None), cast(Any, None), front, text_prompt="Be kind.", voice_prompt=None
    )
    backend = DuplexBackend("duplex", cast(Any, connection), AsyncExitStack(), session, 60.0)
    session.backend = backend
    return session, front, backend


def test_the_counter_reads_the_audio_from_the_pages_and_keeps_the_headers() -> None:
    messages = encoded(tone(12))
    counter = OggCounter(SAMPLE_RATE)
    assert sum(counter.count(m) for m in messages) == 12 * FRAME
    assert counter.headers.count(b"OggS") == 2  # OpusHead and OpusTags
    late = sphn.OpusStreamReader(SAMPLE_RATE)  # a decoder started mid-stream
    late.append_bytes(counter.headers)
    heard = [late.append_bytes(m) for m in messages[6:]]
    assert sum(len(pcm) for pcm in heard if pcm is not None) == 6 * FRAME
    again = encoded(tone(2))  # the client starts a new stream: counted from its start
    assert sum(counter.count(m) for m in again) == 2 * FRAME


async def test_the_engine_hears_the_clients_own_stream_undecoded() -> None:
    messages = encoded(tone(5))
    connection = FakeConnection()
    session, _, backend = await on_duplex(connection)
    counter = OggCounter(SAMPLE_RATE)
    assert session.hears_ogg
    for message in messages:
        await session.feed_ogg(message, counter.count(message), never_decoded)
    await backend.close()
    assert b"".join(ogg for ogg, _ in connection.ogg) == b"".join(messages), "as it came"
    assert connection.frames == [], "nothing encoded again"
    assert sum(samples for _, samples in connection.ogg) == 5 * FRAME
    assert session.frames_in == 5


def never_decoded() -> Pcm:
    raise AssertionError("the engine hears the Ogg bytes: nothing is decoded")


async def test_an_engine_without_ogg_input_gets_frames() -> None:
    pcm = tone(3)
    connection = FakeConnection(takes_ogg=False)
    session, _, backend = await on_duplex(connection)
    assert not session.hears_ogg
    await session.feed(pcm[: FRAME + 100])
    await session.feed(pcm[FRAME + 100 :])
    await backend.close()
    assert connection.ogg == []
    assert [len(frame) for frame in connection.frames] == [FRAME] * 3
    assert np.array_equal(np.concatenate(connection.frames), pcm)


async def test_a_send_that_fails_keeps_the_frames_and_answers_with_silence() -> None:
    connection = FakeConnection(broken=True)
    session, front, backend = await on_duplex(connection)
    pcm = tone(2)
    await session.feed_ogg(b"OggS...", 2 * FRAME, lambda: pcm)
    assert backend.failed.done(), "the watcher moves the session to the cascade"
    assert not session.hears_ogg, "from here on the client's audio is decoded"
    assert session._held is not None and np.array_equal(np.concatenate(session._held), pcm)
    assert len(front.frames) == 2 and all(frame is SILENCE for frame in front.frames)
    await backend.close()


class Socket:
    """What ``DuplexSocket`` needs of a WebSocket: it keeps the messages."""

    closed = False

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)


async def test_the_client_hears_the_engines_pages_then_ours_as_one_stream() -> None:
    ws = Socket()
    socket = DuplexSocket(cast(Any, ws))
    engine = encoded(tone(6))
    reader = sphn.OpusStreamReader(SAMPLE_RATE)
    for message in engine:
        await socket.audio(reader.append_bytes(message), message)
    assert [m[1:] for m in ws.sent] == engine, "the engine's pages, as they came"
    for frame in range(4):  # a failover: silence, then the cascade, from our encoder
        await socket.audio(SILENCE if frame < 2 else tone(1, start=frame))
    assert all(m[:1] == b"\x01" for m in ws.sent)
    stream = b"".join(m[1:] for m in ws.sent)
    check_one_stream(stream)
    assert decoded_samples(stream) == 10 * FRAME


async def test_the_socket_decodes_mid_stream_once_the_audio_is_wanted() -> None:
    socket = DuplexSocket(cast(Any, Socket()))
    messages = encoded(tone(8))
    assert sum(socket.count(m) or 0 for m in messages[:5]) == 5 * FRAME  # to the engine
    assert socket.reader is None, "nothing decoded while the engine hears the pages"
    heard = [socket.decode(m) for m in messages[5:]]  # the engine failed: the cascade listens
    assert sum(len(pcm) for pcm in heard if pcm is not None) == 3 * FRAME
    assert socket.count(b"not Ogg at all, not even close") is None
