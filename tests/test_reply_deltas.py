"""A reply's audio leaves in pieces of about ``DELTA_MS``, resampled piece by piece.

A TTS chunk is a whole sentence (Piper's unit): seconds of audio. Sent as one event it had to be
resampled, base64-encoded and parsed whole before the client heard its first sample; in pieces,
the first is on its way at once. The pieces carry the samples that resampling the chunk whole
gives, and the sentence times that ``truncate`` keeps stay exact.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path

import numpy as np
import pytest
import soxr

from orchestrator.voice.reply import DELTA_MS, OUT_RATE, deltas
from services.base import AudioChunk
from tests.conftest import RuntimeFactory
from tests.test_reply_fallback import FakeVoice, done, open_session

VOICE_RATE = 16_000


def sentence_audio(seconds: float, rate: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * rate)) * 3000).astype(np.int16).tobytes()


@pytest.mark.parametrize("rate", [16_000, 22_050])
def test_pieces_carry_what_resampling_the_chunk_whole_gives(rate: int) -> None:
    pcm = sentence_audio(3.0, rate)
    pieces = list(deltas(AudioChunk(pcm, rate)))
    assert len(pieces) >= 3000 // DELTA_MS
    assert all(len(p) // 2 <= OUT_RATE * DELTA_MS // 1000 * 1.25 for p in pieces)  # soxr's blocks
    joined = np.frombuffer(b"".join(pieces), dtype=np.int16)
    whole = np.asarray(soxr.resample(np.frombuffer(pcm, np.int16), rate, OUT_RATE), np.int16)
    assert len(joined) == len(whole)
    assert np.abs(joined.astype(int) - whole.astype(int)).max() <= 2  # the last bit's rounding


def test_at_the_output_rate_pieces_are_slices() -> None:
    pcm = sentence_audio(1.1, OUT_RATE)
    pieces = list(deltas(AudioChunk(pcm, OUT_RATE)))
    assert b"".join(pieces) == pcm
    assert [len(p) // 2 for p in pieces] == [OUT_RATE * DELTA_MS // 1000] * 5 + [2400]


class LongVoice(FakeVoice):
    """A voice that speaks each sentence as one chunk of one second at 16 kHz, as Piper does."""

    async def synthesize(
        self, text: str, *, voice: str | None = None
    ) -> AsyncGenerator[AudioChunk, None]:
        self.sentences.append(text)
        yield AudioChunk(sentence_audio(1.0, VOICE_RATE, len(self.sentences)), VOICE_RATE)


async def test_a_sentence_leaves_in_pieces_and_truncation_keeps_what_was_heard(
    tmp_path: Path, make_runtime: RuntimeFactory
) -> None:
    _, session, client, engines = await open_session(tmp_path, make_runtime, "{}")
    engines["tts"].__class__ = LongVoice
    events = await client.reply(session)
    assert done(events).status == "completed"
    audio = [e for e in events if e.kind == "reply_audio"]
    assert len(audio) == 2 * (1000 // DELTA_MS), "each one-second sentence in pieces"
    samples = sum(len(e.audio) // 2 for e in audio)
    assert samples == 2 * OUT_RATE
    session.truncate(done(events).item_id, 1500)  # heard the first sentence, not the second
    assert session.history.messages()[-1] == {"role": "assistant", "content": "Hello there."}
    await session.close()
