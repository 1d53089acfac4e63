"""The voice API and the console on one runtime, each on the port its configuration names, as
``orchestrator.server`` runs them: the Talk page's relay finds the API where the configuration
says, and the console's own origin is the one derived from its port.

The engines are the tiny real ones (Silero VAD, Whisper, Piper) but for the LLM, which says
``SAID``: the random tiny LLM now and then says nothing Piper can speak (about 1 reply in 20 of
a few tokens), and these tests are about the page and the relay hearing a reply, not the model.

``Voice.ended`` is set each time a ``/v1/realtime`` handler returns (its session closed and its
engines given back), so a test waits on that instead of guessing when the relay let go.
"""

from __future__ import annotations

import asyncio
import io
import wave
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler

from console.app import create_console_app
from orchestrator.api.app import create_api_app
from orchestrator.app.runtime import Runtime
from orchestrator.config import AppConfig
from services.base import Role
from tests.conftest import RuntimeFactory
from tests.fakes import FakeEngine

RATE = 24_000
SAID = "Hello there. How are you today?"


class ScriptedChat(FakeEngine):
    """An LLM that always says ``SAID``, word by word, as a model streams."""

    def __init__(self, name: str = "llm") -> None:
        super().__init__(name, Role.LLM, steps=1)

    async def chat(
        self, messages: list[dict[str, str]], *, options: dict[str, Any] | None = None
    ) -> AsyncGenerator[str, None]:
        for word in SAID.split(" "):
            yield word + " "


@dataclass
class Voice:
    runtime: Runtime
    api: TestServer
    console: TestServer
    ended: asyncio.Queue[str]  # one entry per /v1/realtime handler that returned

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.console.port}"


async def serve_voice(
    config: AppConfig, make_runtime: RuntimeFactory, aiohttp_server: Any
) -> Voice:
    runtime = make_runtime(config, writer=True, engines={"llm": ScriptedChat()})
    ended: asyncio.Queue[str] = asyncio.Queue()

    @web.middleware
    async def note_end(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        finally:
            if request.path == "/v1/realtime":
                ended.put_nowait(request.path)

    api_app = create_api_app(runtime)
    api_app.middlewares.append(note_end)
    server = config.server
    api = await aiohttp_server(api_app, host="127.0.0.1", port=server.api_port)
    console_app = create_console_app(runtime, environ={})
    console = await aiohttp_server(console_app, host="127.0.0.1", port=server.console_port)
    return Voice(runtime, api, console, ended)


def wav_bytes(samples: npt.NDArray[np.float32], rate: int = RATE) -> bytes:
    """Mono PCM16 WAV, as Chromium's fake microphone reads it."""
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes((np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes())
    return out.getvalue()


def voiced(seconds: float, rate: int = RATE) -> npt.NDArray[np.float32]:
    """A voice-like buzz (a 140 Hz fundamental and its harmonics, syllables at 4 Hz): audio a
    push-to-talk turn can carry without a speech synthesiser on the machine."""
    t = np.arange(int(seconds * rate)) / rate
    tone = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 12))
    syllables = 0.5 * (1 - np.cos(2 * np.pi * 4 * t))
    return (0.25 * tone * syllables).astype(np.float32)
