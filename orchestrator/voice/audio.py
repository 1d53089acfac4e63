"""Audio in and out of the voice API: decode any upload, resample, and encode streams.

Decoding and compressed encoding use PyAV (FFmpeg's codecs, shipped in its wheels);
resampling uses soxr. Everything here is blocking and CPU-bound: callers run it in a thread.
"""

from __future__ import annotations

import io
import struct
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import soxr

from services.errors import InvalidInput

# What each response_format is called by FFmpeg: (container, codec, content type).
COMPRESSED = {
    "mp3": ("mp3", "libmp3lame", "audio/mpeg"),
    "opus": ("ogg", "libopus", "audio/ogg"),
    "flac": ("flac", "flac", "audio/flac"),
    "aac": ("adts", "aac", "audio/aac"),
}
CONTENT_TYPES = {"wav": "audio/wav", "pcm": "audio/pcm", **{k: v[2] for k, v in COMPRESSED.items()}}
OPUS_RATE = 48_000
PCM_RATE = 24_000  # raw PCM carries no header: OpenAI clients assume 24 kHz


class AudioTooLong(InvalidInput):
    """The decoded audio runs past the configured limit (``api.max_audio_s``): a 413."""

    code = "audio_too_long"
    status = 413


def decode(data: bytes, rate: int, max_s: float | None = None) -> npt.NDArray[np.float32]:
    """Decode an uploaded file of any common format to mono float32 at ``rate``.

    Decoding stops as soon as the audio runs past ``max_s`` seconds (``AudioTooLong``): a small
    file of compressed silence may decode to hours and gigabytes. Metadata that is not UTF-8
    is read with replacement characters: it is never used, and the audio may still be good.
    """
    if not data:
        raise InvalidInput("the audio file is empty")
    limit = None if max_s is None else int(max_s * rate)
    parts: list[npt.NDArray[np.float32]] = []
    decoded = 0
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="replace") as container:
            if not container.streams.audio:
                raise InvalidInput("the file has no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    parts.append(np.asarray(out.to_ndarray(), dtype=np.float32).reshape(-1))
                    decoded += parts[-1].size
                if limit is not None and decoded > limit:
                    raise AudioTooLong(
                        f"the audio is longer than the limit of {max_s:g} s (api.max_audio_s)"
                    )
            for out in resampler.resample(None):
                parts.append(np.asarray(out.to_ndarray(), dtype=np.float32).reshape(-1))
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"could not decode the audio: {exc}") from exc
    if not parts:
        raise InvalidInput("the file holds no audio samples")
    return np.concatenate(parts).astype(np.float32, copy=False)


def resample_pcm16(pcm16: bytes, source_rate: int, target_rate: int) -> bytes:
    if source_rate == target_rate:
        return pcm16
    samples = np.frombuffer(pcm16, dtype=np.int16)
    resampled = soxr.resample(samples, source_rate, target_rate)
    return np.asarray(resampled, dtype=np.int16).tobytes()


def wav_header(rate: int, data_bytes: int = 0xFFFFFFFF - 36) -> bytes:
    """A PCM16 mono WAV header; the default size marks a stream of unknown length."""
    return (
        b"RIFF"
        + struct.pack("<I", min(36 + data_bytes, 0xFFFFFFFF))
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


class _Sink(io.RawIOBase):
    """An append-only, unseekable file: muxers then write strictly in order, as a stream."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._written = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._written += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._written

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


class StreamEncoder:
    """Turns PCM16 mono chunks into a byte stream of one response format, chunk by chunk."""

    def __init__(self, fmt: str, input_rate: int) -> None:
        if fmt not in CONTENT_TYPES:
            raise InvalidInput(f"response_format must be one of {sorted(CONTENT_TYPES)}")
        self.format = fmt
        self.input_rate = input_rate
        # OpenAI's speech is 24 kHz in every format but Opus (48 kHz, the codec's own): the
        # same here, whatever rate the engine speaks at (Piper 22.05 kHz, others 16 or 24).
        self.rate = OPUS_RATE if fmt == "opus" else PCM_RATE
        self.content_type = CONTENT_TYPES[fmt]
        self._started = False
        self._sink = _Sink()
        self._container: Any = None
        self._stream: Any = None
        self._pts = 0
        if fmt in COMPRESSED:
            container, codec, _ = COMPRESSED[fmt]
            self._container = av.open(self._sink, mode="w", format=container)
            self._stream = self._container.add_stream(codec, rate=self.rate, layout="mono")

    def encode(self, pcm16: bytes) -> bytes:
        pcm16 = resample_pcm16(pcm16, self.input_rate, self.rate)
        if self.format == "pcm":
            return pcm16
        if self.format == "wav":
            head = b"" if self._started else wav_header(self.rate)
            self._started = True
            return head + pcm16
        samples = np.frombuffer(pcm16, dtype=np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self._pts
        self._pts += samples.shape[1]
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._sink.take()

    def close(self) -> bytes:
        if self._container is None:
            return b"" if self._started or self.format == "pcm" else wav_header(self.rate, 0)
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._sink.take()
