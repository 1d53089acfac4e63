"""Speech recognition by an OpenAI-compatible server (a whisper.cpp server, Groq, speaches).

``POST {url}/audio/transcriptions``, multipart, the audio as 16 kHz PCM16 WAV. With
``response_format = "verbose_json"`` (the default) the server's segments and their times come
back; with ``json`` or ``text`` one segment spans the whole audio.
"""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncGenerator
from typing import Any, Literal

import httpx
import numpy as np
import numpy.typing as npt

from services.base import Role, Segment
from services.errors import EngineCallError, InvalidInput
from services.openai_base import OpenAIOptions, OpenAIServer
from services.server_errors import translate

SAMPLE_RATE = 16_000


class TranscriptionOptions(OpenAIOptions):
    url: str = "http://127.0.0.1:11401/v1"  # the seed deployment's whisper server
    response_format: Literal["verbose_json", "json", "text"] = "verbose_json"
    language: str | None = None
    prompt: str | None = None


class OpenAITranscriber(OpenAIServer):
    role = Role.ASR
    Options = TranscriptionOptions
    options: TranscriptionOptions

    async def transcribe(
        self, audio: npt.NDArray[np.float32], *, language: str | None = None
    ) -> AsyncGenerator[Segment, None]:
        """Transcribe mono 16 kHz float32 audio; the server answers once, segments follow."""
        self._require_loaded()
        wav = to_wav(audio)
        duration = (len(wav) - 44) / 2 / SAMPLE_RATE
        options = self.options
        form: dict[str, Any] = {
            "model": self.model_name,
            "response_format": options.response_format,
        }
        if language or options.language:
            form["language"] = language or options.language
        if options.prompt:
            form["prompt"] = options.prompt
        form.update({k: str(v) for k, v in options.extra_body.items()})
        url = f"{self.base_url}/audio/transcriptions"
        try:
            reply = await self.client().post(
                url,
                data=form,
                files={"file": ("audio.wav", wav, "audio/wav")},
                headers=self.headers(),
            )
        except httpx.HTTPError as exc:
            raise translate(exc, engine=self.name, what="transcribe") from exc
        if reply.status_code != 200:
            raise await self._post_error(reply, "transcribe")
        for segment in self._segments(reply, duration):
            yield segment

    def _segments(self, reply: httpx.Response, duration: float) -> list[Segment]:
        if self.options.response_format == "text":
            return [Segment(0.0, duration, reply.text.strip())]
        try:
            body = reply.json()
            segments = body.get("segments") or []
            if not segments:
                return [Segment(0.0, duration, str(body["text"]))]
            return [
                Segment(
                    start=float(s["start"]),
                    end=float(s["end"]),
                    text=str(s["text"]),
                    no_speech_prob=float(s.get("no_speech_prob", 0.0)),
                )
                for s in segments
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise EngineCallError(
                f"transcribe: unexpected answer {reply.text[:120]!r}", engine=self.name
            ) from exc


def to_wav(audio: npt.NDArray[Any]) -> bytes:
    samples = np.asarray(audio)
    if samples.ndim != 1 or samples.size == 0:
        raise InvalidInput(f"audio must be mono and non-empty, got shape {samples.shape}")
    if not np.issubdtype(samples.dtype, np.floating) or not np.all(np.isfinite(samples)):
        raise InvalidInput("audio must be finite float samples in [-1, 1]")
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm)
    return buffer.getvalue()
