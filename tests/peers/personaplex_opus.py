"""The Ogg Opus side of NVIDIA PersonaPlex's server, run with the sphn it pins (0.1.x).

It follows NVIDIA/personaplex@3428dfd ``moshi/moshi/server.py`` (``ServerState.handle_chat``,
server last changed in 9949e7b) with ``sphn>=0.1.4,<0.2`` from ``moshi/pyproject.toml``:

- reading: one ``sphn.OpusStreamReader(24000)``; each 0x01 message's payload goes to
  ``append_bytes`` as it arrives and ``read_pcm()`` is polled for what has been decoded
  (``recv_loop`` / ``opus_loop``: sphn 0.1 decodes on a thread of its own);
- writing: one ``sphn.OpusStreamWriter(24000)``; each 80 ms frame goes to ``append_pcm`` and
  ``read_bytes()`` is polled, each non-empty result sent as one 0x01 message (``send_loop``).

Run by tests/test_personaplex_opus.py with the interpreter of tests/opus_venv.py's venv, so it
imports only the standard library, numpy and sphn: ``python personaplex_opus.py IN.npz OUT.npz``.
IN holds ``pcm`` (float32 at 24 kHz, whole 1920-sample frames), our messages' payloads as
``chunks`` (uint8, concatenated) with their ``lengths``, and ``expect`` (samples to wait for);
OUT gets ``decoded`` (our payloads, decoded), ``encoded``/``encoded_lengths`` (``pcm``, encoded
as the server sends it) and ``version``.
"""

from __future__ import annotations

import sys
import time
from importlib.metadata import version

import numpy as np
import sphn

SAMPLE_RATE = 24000
FRAME = 1920
DEADLINE_S = 10.0  # sphn 0.1 works on threads; this bounds the wait for what they still owe
POLL_S = 0.001  # the server's own poll interval


def decode(chunks: list[bytes], expect: int) -> np.ndarray:
    reader = sphn.OpusStreamReader(SAMPLE_RATE)
    pieces, total = [], 0
    for chunk in chunks:
        reader.append_bytes(chunk)
        pcm = reader.read_pcm()
        pieces.append(pcm)
        total += pcm.shape[-1]
    deadline = time.monotonic() + DEADLINE_S
    while total < expect and time.monotonic() < deadline:
        time.sleep(POLL_S)
        pcm = reader.read_pcm()
        pieces.append(pcm)
        total += pcm.shape[-1]
    return np.concatenate(pieces).astype(np.float32)


def encode(pcm: np.ndarray) -> list[bytes]:
    writer = sphn.OpusStreamWriter(SAMPLE_RATE)
    frames = len(pcm) // FRAME
    chunks = []
    for i in range(frames):
        writer.append_pcm(pcm[i * FRAME : (i + 1) * FRAME])
        chunks.append(writer.read_bytes())
    pages = sum(chunk.count(b"OggS") for chunk in chunks)
    deadline = time.monotonic() + DEADLINE_S
    while pages < frames + 2 and time.monotonic() < deadline:  # + OpusHead and OpusTags
        time.sleep(POLL_S)
        chunk = writer.read_bytes()
        chunks.append(chunk)
        pages += chunk.count(b"OggS")
    return [chunk for chunk in chunks if chunk]


def main() -> None:
    source, target = sys.argv[1], sys.argv[2]
    data = np.load(source)
    blob = data["chunks"].tobytes()
    ours, offset = [], 0
    for length in data["lengths"].tolist():
        ours.append(blob[offset : offset + length])
        offset += length
    decoded = decode(ours, int(data["expect"]))
    encoded = encode(data["pcm"].astype(np.float32))
    np.savez(
        target,
        decoded=decoded,
        encoded=np.frombuffer(b"".join(encoded), dtype=np.uint8),
        encoded_lengths=np.array([len(c) for c in encoded], dtype=np.int64),
        version=np.array(version("sphn")),
    )


if __name__ == "__main__":
    main()
