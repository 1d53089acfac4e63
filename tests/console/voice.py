"""The voice API and the console on one runtime of tiny real engines, each on the port its
configuration names, as ``orchestrator.server`` runs them: the Talk page's relay finds the API
where the configuration says, and the console's own origin is the one derived from its port.

``Voice.ended`` is set each time a ``/v1/realtime`` handler returns (its session closed and its
engines given back), so a test waits on that instead of guessing when the relay let go.
"""

from __future__ import annotations

import asyncio
import io
import wave
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
from tests.conftest import RuntimeFactory

RATE = 24_000


@dataclass
class Voice:
    runtime: Runtime
    api: TestServer
    console: TestServer
    ended: asyncio.Queue[str]  # one entry per /v1/realtime handler that returned

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.console.port}"


def short_replies(config: AppConfig) -> AppConfig:
    """Replies of a few tokens: these tests are about the path, not what the model says."""
    short = config.sessions.model_copy(
        update={"llm_options": {"max_new_tokens": 8, "min_new_tokens": 4}}
    )
    return config.model_copy(update={"sessions": short})


async def serve_voice(
    config: AppConfig, make_runtime: RuntimeFactory, aiohttp_server: Any
) -> Voice:
    runtime = make_runtime(short_replies(config), writer=True)
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
