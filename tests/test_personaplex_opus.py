"""Ogg Opus between our client (sphn 0.2) and PersonaPlex's server (it pins sphn<0.2): each side
decodes what the other encodes, as the bytes travel on the wire.

The server's side is tests/peers/personaplex_opus.py, run in a venv of its own with sphn 0.1.x
(tests/opus_venv.py). Our side is the client's own code path: ``send_frame`` into a socket that
keeps what it is given, and the received messages through the client's ``_output``, whose Ogg
pages ``/v1/duplex`` passes on to its client, spliced with ours after a failover.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import sphn

from services import duplex_protocol as protocol
from services.base import AudioOut
from services.duplex_client import PersonaPlexConnection
from services.ogg import OggSplicer
from tests import opus_venv

FRAME = protocol.FRAME_SAMPLES
FRAMES = 25  # 2 s
SERVER_SIDE = Path(__file__).parent / "peers" / "personaplex_opus.py"


@pytest.fixture(scope="module")
def server_python() -> Path:
    try:
        return opus_venv.ensure(retry=bool(os.environ.get("CI")))
    except opus_venv.Unavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Opus interoperability test: {exc}")
        pytest.skip(f"no venv with PersonaPlex's sphn 0.1 ({exc}); `python -m tests.opus_venv`")


class Socket:
    """What ``send_frame`` needs of a WebSocket: it keeps the messages."""

    closed = False

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)

    async def close(self) -> None:
        self.closed = True


def speech_like() -> np.ndarray:
    """A 440 Hz tone under a slow swell: easy to recognise after a lossy codec."""
    t = np.arange(FRAMES * FRAME) / protocol.SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 1.3 * t)).astype(np.float32)


def likeness(decoded: np.ndarray, source: np.ndarray) -> float:
    """The best normalised correlation of ``decoded`` with ``source`` over the codec's delays
    (up to 1000 samples)."""
    span = len(source) - 1000
    ref = source[:span]
    best = 0.0
    for lag in range(1000):
        part = decoded[lag : lag + span]
        if len(part) < span:
            break
        denominator = float(np.sqrt(np.dot(part, part) * np.dot(ref, ref))) or 1.0
        best = max(best, float(np.dot(part, ref)) / denominator)
    return best


def run_server_side(python: Path, tmp: Path, pcm: np.ndarray, ours: list[bytes]) -> Any:
    source, target = tmp / "in.npz", tmp / "out.npz"
    np.savez(
        source,
        pcm=pcm,
        chunks=np.frombuffer(b"".join(ours), dtype=np.uint8),
        lengths=np.array([len(c) for c in ours], dtype=np.int64),
        expect=np.array(len(pcm)),
    )
    done = subprocess.run(
        [str(python), str(SERVER_SIDE), str(source), str(target)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return np.load(target)


async def test_the_servers_sphn_and_ours_decode_each_other(
    server_python: Path, tmp_path: Path
) -> None:
    pcm = speech_like()
    socket: Any = Socket()
    client = PersonaPlexConnection(socket, aiohttp.ClientSession(), name="t", tail_s=0.1)
    try:
        for i in range(FRAMES):
            await client.send_frame(pcm[i * FRAME : (i + 1) * FRAME])
        assert all(message[:1] == b"\x01" for message in socket.sent)
        ours = [message[1:] for message in socket.sent]

        server = run_server_side(server_python, tmp_path, pcm, ours)
        assert str(server["version"]).startswith("0.1."), "the sphn that PersonaPlex pins"

        # the server decodes what we send
        decoded = server["decoded"]
        assert len(decoded) == len(pcm), "every frame we sent reached the model"
        assert likeness(decoded, pcm) > 0.9

        # we decode what the server sends, message by message, and keep its pages
        blob, heard, pages = server["encoded"].tobytes(), [], []
        offset = 0
        for length in server["encoded_lengths"].tolist():
            output = client._output(b"\x01" + blob[offset : offset + length])
            offset += length
            if isinstance(output, AudioOut):
                heard.append(output.pcm)
                pages.append(output.ogg)
        assert protocol.starts_with_opus_head(blob[: server["encoded_lengths"][0]])
        assert client.ignored == 0, "no message of the server's was undecodable"
        received = np.concatenate(heard)
        assert len(received) == len(pcm), "one frame back for each frame the server encoded"
        assert likeness(received, pcm) > 0.9

        # its pages, passed on to a /v1/duplex client, then ours after a failover: one stream
        assert b"".join(pages) == blob, "every byte the server sent, headers included"
        splicer, writer = OggSplicer(), sphn.OpusStreamWriter(protocol.SAMPLE_RATE)
        stream = b"".join([splicer.feed(page, "engine") for page in pages])
        for i in range(FRAMES):
            stream += splicer.feed(writer.append_pcm(pcm[i * FRAME : (i + 1) * FRAME]), "ours")
        assert stream.count(b"OpusHead") == 1
        client_side = sphn.OpusStreamReader(protocol.SAMPLE_RATE).append_bytes(stream)
        assert len(client_side) == 2 * len(pcm)
    finally:
        await client.close()
