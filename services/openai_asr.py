"""Speech recognition by an OpenAI-compatible server (Groq, speaches) or whisper.cpp's server.

``POST {url}/audio/transcriptions``, multipart, the audio as 16 kHz PCM16 WAV. With
``response_format = "verbose_json"`` (the default) the server's segments and their times come
back; with ``json`` or ``text`` one segment spans the whole audio.

whisper.cpp's ``whisper-server`` (adapter ``whisper-cpp``; examples/server/server.cpp, v1.9)
takes the same form on other paths and reads health its own way:

    what          whisper.cpp                                  OpenAI-style servers
    transcribe    POST {root}/inference (--inference-path)     POST {url}/audio/transcriptions
    ready         GET {root}/health: 200 {"status": "ok"}      GET {url}/models
    loading       /health 404 while POST /load runs (its 503,  -
                  rewritten by its error handler)
    model list    none (404): check_model is refused           GET {url}/models
    no language   decodes as its -l ("en"): we send "auto"     the server detects it
    errors        400 "Invalid request" (text), 500 {"error"}; OpenAI's error object
                  before v1.8.4 HTTP 200 {"error": "..."}
"""

from __future__ import annotations

import dataclasses
import io
import json
import wave
from collections.abc import AsyncGenerator
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import numpy as np
import numpy.typing as npt
from pydantic import field_validator

from services.base import Role, Segment
from services.errors import EngineCallError, InvalidInput
from services.openai_base import OpenAIOptions, OpenAIServer
from services.server_errors import translate

SAMPLE_RATE = 16_000


class TranscriptionOptions(OpenAIOptions):
    url: str = "http://127.0.0.1:11401/v1"  # the seed deployment's whisper server
    response_format: Literal["verbose_json", "json", "text"] = "verbose_json"
    language: str | None = None  # None: the server detects the language
    prompt: str | None = None


class WhisperCppOptions(TranscriptionOptions):
    url: str = "http://127.0.0.1:11401"  # the server's root, its --request-path included
    inference_path: str = "/inference"  # its --inference-path

    @field_validator("inference_path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with / (whisper-server's --inference-path)")
        return value

    @field_validator("check_model")
    @classmethod
    def _no_model_list(cls, value: bool) -> bool:
        if value:
            raise ValueError("whisper.cpp's server lists no models (it has no /v1/models)")
        return value


class OpenAITranscriber(OpenAIServer):
    role = Role.ASR
    Options = TranscriptionOptions
    options: TranscriptionOptions

    translates = True  # POST {url}/audio/translations (whisper.cpp: translate=true)

    async def transcribe(
        self,
        audio: npt.NDArray[np.float32],
        *,
        language: str | None = None,
        task: Literal["transcribe", "translate"] = "transcribe",
    ) -> AsyncGenerator[Segment, None]:
        """Transcribe (or translate into English) mono 16 kHz float32 audio; the server
        answers once, segments follow, each with the language the server names."""
        self._require_loaded()
        wav = to_wav(audio)
        duration = (len(wav) - 44) / 2 / SAMPLE_RATE
        options = self.options
        form: dict[str, Any] = {
            "model": self.model_name,
            "response_format": options.response_format,
            **self._form_extras(),
        }
        spoken = self._language(language)
        if spoken and task == "transcribe":  # OpenAI's translation form has no language
            form["language"] = spoken
        if options.prompt:
            form["prompt"] = options.prompt
        form.update({k: str(v) for k, v in options.extra_body.items()})
        url = self.transcription_url
        if task == "translate":
            url = self._translation(form)
        try:
            with self._working():
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

    @property
    def transcription_url(self) -> str:
        return f"{self.base_url}/audio/transcriptions"

    def _translation(self, form: dict[str, Any]) -> str:
        """Where a translation goes (``form`` may gain the field that asks for one)."""
        return f"{self.base_url}/audio/translations"

    def _language(self, language: str | None) -> str | None:
        """The ``language`` form field: the caller's, else the configured one, else none."""
        return language or self.options.language

    def _form_extras(self) -> dict[str, str]:
        return {}

    def _segments(self, reply: httpx.Response, duration: float) -> list[Segment]:
        if self.options.response_format == "text":
            return [Segment(0.0, duration, reply.text.strip())]
        try:
            body = reply.json()
            if "error" in body and "text" not in body:  # whisper.cpp before v1.8.4: HTTP 200
                raise EngineCallError(f"transcribe: {body['error']}", engine=self.name)
            segments = body.get("segments") or []
            language = body.get("language") or None
            if not segments:
                return [Segment(0.0, duration, str(body["text"]).strip(), language=language)]
            return [
                dataclasses.replace(self._segment(s, duration), language=language) for s in segments
            ]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise EngineCallError(
                f"transcribe: unexpected answer {reply.text[:120]!r}", engine=self.name
            ) from exc

    @staticmethod
    def _segment(item: dict[str, Any], duration: float) -> Segment:
        """One segment, its times kept within the audio (whisper.cpp's can run past its end)."""
        start = min(float(item.get("start", 0.0)), duration)  # absent with no_timestamps
        end = min(max(float(item.get("end", duration)), start), duration)
        return Segment(
            start=start,
            end=end,
            text=str(item["text"]),
            no_speech_prob=float(item.get("no_speech_prob", 0.0)),
        )


class WhisperCppTranscriber(OpenAITranscriber):
    """whisper.cpp's ``whisper-server``: its own paths, its health, and "auto" said aloud."""

    Options = WhisperCppOptions
    options: WhisperCppOptions
    install_hint = "build whisper.cpp's whisper-server, or set options.command to its path"

    @property
    def health_url(self) -> str:
        return self.options.health_url or f"{self.base_url}/health"

    @property
    def transcription_url(self) -> str:
        return f"{self.base_url}{self.options.inference_path}"

    def _language(self, language: str | None) -> str:
        """Never empty: without a ``language`` field the server decodes as its ``-l`` ("en")."""
        return language or self.options.language or "auto"

    def _translation(self, form: dict[str, Any]) -> str:
        """The same path, with its ``translate`` field (server.cpp reads it as a bool) and a
        source language ("auto" unless configured: else it would assume its ``-l``)."""
        form["translate"] = "true"
        form.setdefault("language", self.options.language or "auto")
        return self.transcription_url

    def _form_extras(self) -> dict[str, str]:
        # verbose_json would otherwise run the encoder again for language probabilities
        verbose = self.options.response_format == "verbose_json"
        return {"no_language_probabilities": "true"} if verbose else {}

    async def _loading_note(self, response: httpx.Response) -> str | None:
        """The server sets 503 ``{"status": "loading model"}`` while ``POST /load`` runs, but its
        error handler turns every status but 400 and 500 into 404 ``File Not Found (/health)``
        on the wire. So a 404 from whisper.cpp whose root page answers is its loading 503."""
        if response.status_code == 503:
            try:
                status = json.loads(response.content).get("status")
            except (ValueError, AttributeError):
                return None
            return "the server is loading its model" if status == "loading model" else None
        if response.status_code != 404 or response.headers.get("server") != "whisper.cpp":
            return None
        try:
            page = await self.client().get(
                f"{self.base_url}/", headers=self.headers(), timeout=self.options.health_timeout_s
            )
        except httpx.HTTPError:
            return None
        if page.status_code != 200:
            return None  # not even its page at this path: url is not its --request-path
        return (
            "whisper.cpp answers 404 for /health: it does so while it loads a model (or it is "
            "older than v1.7.5, which had no /health: then set options.health_url)"
        )

    def default_command(self) -> tuple[str, ...]:
        """``whisper-server`` serving ``model`` (a ggml file) where ``url`` says."""
        parts = urlsplit(self.base_url)
        command = ["whisper-server", "--model", self.spec.model]
        command += ["--host", parts.hostname or "127.0.0.1", "--port", str(parts.port or 80)]
        if parts.path.rstrip("/"):
            command += ["--request-path", parts.path.rstrip("/")]
        if self.options.inference_path != "/inference":
            command += ["--inference-path", self.options.inference_path]
        return tuple(command)


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
