"""Speech by an OpenAI-compatible server (Kokoro, speaches, the VibeVoice wrapper), streamed.

``POST {url}/audio/speech`` with ``response_format: "pcm"`` (16-bit little-endian mono, 24 kHz
as OpenAI sends it); the body is read as it arrives and handed on in chunks of ``chunk_ms``. A
server that answers WAV instead has its header read for the rate and skipped.

A server that lists its voices (``voices_path``: Kokoro's and the VibeVoice wrapper's
``GET /v1/audio/voices``) has them read at load: a configured voice it lacks fails the load, and
a request for one it lacks is refused before it is sent (the VibeVoice wrapper would otherwise
speak it as "Carter" without a word).

VibeVoice-Realtime has no unload endpoint: ``vibevoice`` supervises its server (command from the
config), counts it ready when ``/health`` says ``model_loaded``, and unloads by stopping it. Its
community wrapper synthesises the whole utterance on its event loop before it answers, so its
``/health`` is silent while it speaks: ``stalls_while_busy`` reads that as busy, not down.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import Field

from services.base import AudioChunk, Role
from services.errors import InvalidInput, ModelMissing
from services.openai_base import OpenAIOptions, OpenAIServer
from services.server_errors import ServerRejected, translate
from services.server_options import Seconds


class SpeechOptions(OpenAIOptions):
    url: str = "http://127.0.0.1:8880/v1"  # the seed deployment's speech server (VibeVoice)
    voice: str = "alloy"
    sample_rate: int = Field(default=24_000, ge=8000)
    chunk_ms: int = Field(default=100, ge=10)
    speed: float | None = None
    max_text_chars: int = Field(default=4096, ge=1)
    voices_path: str | None = None  # GET {url}{voices_path} lists the voices (None: not checked)


class VibeVoiceOptions(SpeechOptions):
    supervise: bool = True
    health_json_true: str | None = "model_loaded"
    voice: str = "Emma"
    ready_timeout_s: Seconds = 180.0  # the model loads before /health says so (10-30 s)
    voices_path: str | None = "/audio/voices"
    stalls_while_busy: bool = True  # the wrapper blocks its event loop while it synthesises


class OpenAISpeech(OpenAIServer):
    role = Role.TTS
    Options = SpeechOptions
    options: SpeechOptions
    voices: tuple[str, ...] | None = None  # what the server offers, read at load (if it lists)

    native_speed = True  # OpenAI's ``speed``, which such servers read

    async def synthesize(
        self, text: str, *, voice: str | None = None, speed: float | None = None
    ) -> AsyncGenerator[AudioChunk, None]:
        """Stream the server's PCM; ``speed`` (0.25-4) overrides ``options.speed``."""
        self._require_loaded()
        options = self.options
        if not text.strip():
            raise InvalidInput("text is empty", engine=self.name)
        if len(text) > options.max_text_chars:
            raise InvalidInput(
                f"text is {len(text)} characters; the limit is {options.max_text_chars}"
            )
        speaker = voice or options.voice
        problem = self._voice_problem(speaker)
        if problem is not None:
            raise InvalidInput(problem, engine=self.name)
        body: dict[str, Any] = {
            **options.extra_body,
            "model": self.model_name,
            "input": text,
            "voice": speaker,
            "response_format": "pcm",
        }
        pace = speed if speed is not None else options.speed
        if pace is not None:
            body["speed"] = pace
        url = f"{self.base_url}/audio/speech"
        try:
            with self._working():
                async with self.client().stream(
                    "POST", url, json=body, headers=self.headers()
                ) as reply:
                    if reply.status_code != 200:
                        raise await self._post_error(reply, "speech")
                    wav = "wav" in reply.headers.get("content-type", "")
                    async for chunk in self._chunks(reply, wav):
                        yield chunk
        except httpx.HTTPError as exc:
            raise translate(exc, engine=self.name, what="speech") from exc

    async def _attach(self) -> None:
        await super()._attach()
        if self.options.voices_path is None:
            return
        self.voices = await self._offered_voices()
        problem = self._voice_problem(self.options.voice)
        if problem is not None:
            raise ModelMissing(problem, engine=self.name, hint="set options.voice to one of them")

    async def _offered_voices(self) -> tuple[str, ...]:
        url = f"{self.base_url}{self.options.voices_path}"
        try:
            response = await self.client().get(url, headers=self.headers())
            response.raise_for_status()
            return voice_names(response.json())
        except httpx.HTTPError as exc:
            raise translate(exc, engine=self.name, what=f"GET {url}") from exc
        except ValueError as exc:
            raise ServerRejected(f"GET {url}: not a voice list", engine=self.name) from exc

    def _voice_problem(self, voice: str) -> str | None:
        """Why the server cannot speak ``voice`` (None when it can, or when it lists none)."""
        offered = self.voices
        if offered is None or voice in offered:
            return None
        close = [name for name in offered if name.lower() == voice.lower()]
        near = f" (did you mean {close[0]!r}?)" if close else ""
        return f"the server has no voice {voice!r}{near}; it offers {', '.join(offered)}"

    async def _chunks(self, reply: httpx.Response, wav: bool) -> AsyncGenerator[AudioChunk, None]:
        rate = self.options.sample_rate
        buffer = bytearray()
        header_done = not wav
        async for piece in reply.aiter_bytes():
            buffer += piece
            if not header_done:
                found = wav_header(bytes(buffer), rate)
                if found is None:
                    continue
                rate, offset = found
                del buffer[:offset]
                header_done = True
            size = max(2, rate * self.options.chunk_ms // 1000 * 2)
            while len(buffer) >= size:
                yield AudioChunk(bytes(buffer[:size]), rate)
                del buffer[:size]
        whole = len(buffer) - len(buffer) % 2
        if whole:
            yield AudioChunk(bytes(buffer[:whole]), rate)


class VibeVoiceSpeech(OpenAISpeech):
    """The VibeVoice-Realtime wrapper under our supervisor; unloading stops its process."""

    Options = VibeVoiceOptions
    options: VibeVoiceOptions
    native_speed = False  # the community wrapper ignores ``speed``: the API resamples

    @property
    def health_url(self) -> str:
        """``/health`` at the server's root (``model_loaded`` turns true once it can speak)."""
        if self.options.health_url:
            return self.options.health_url
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}/health"


def voice_names(body: Any) -> tuple[str, ...]:
    """The names in a voice list: ``{"voices": [...]}`` or a bare list, of names or of objects
    naming them (``voice_id``, ``id`` or ``name``); ValueError when it is none of these."""
    items = body.get("voices") if isinstance(body, dict) else body
    if not isinstance(items, list):
        raise ValueError("no list of voices")
    names: list[str] = []
    for item in items:
        if isinstance(item, dict):
            item = item.get("voice_id") or item.get("id") or item.get("name")
        if not isinstance(item, str) or not item:
            raise ValueError(f"a voice without a name: {item!r}")
        names.append(item)
    return tuple(dict.fromkeys(names))


def wav_header(data: bytes, default_rate: int) -> tuple[int, int] | None:
    """(sample rate, offset of the samples) of a WAV stream once its header has arrived."""
    if len(data) < 12:
        return None
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return default_rate, 0  # not WAV after all: raw PCM
    offset, rate = 12, default_rate
    while offset + 8 <= len(data):
        chunk_id, size = (
            data[offset : offset + 4],
            struct.unpack("<I", data[offset + 4 : offset + 8])[0],
        )
        if chunk_id == b"data":
            return rate, offset + 8
        if chunk_id == b"fmt ":
            if offset + 16 > len(data):
                return None
            rate = struct.unpack("<I", data[offset + 12 : offset + 16])[0]
        offset += 8 + size + (size % 2)
    return None
