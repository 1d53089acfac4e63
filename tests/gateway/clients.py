"""What the gateway tests send: an official ``openai`` client on the gateway, spoken audio."""

from __future__ import annotations

import io
import wave

import numpy as np
import openai

from tests.conftest import API_KEY
from tests.gateway.conftest import Stack
from tests.speech import silence, speak

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def sdk(stack: Stack, api_key: str = API_KEY) -> openai.AsyncOpenAI:
    """The official client, pointed at the gateway (``base_url = gateway + "/v1"``)."""
    return openai.AsyncOpenAI(base_url=stack.url + "/v1", api_key=api_key, max_retries=0)


def spoken_wav(text: str, rate: int = 16_000) -> bytes:
    """``text`` spoken by espeak-ng, as a WAV file."""
    samples = np.concatenate([speak(text, rate), silence(0.3, rate)])
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes())
    return buffer.getvalue()
