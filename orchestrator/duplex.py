"""``/v1/duplex``: the PersonaPlex (Moshi) wire protocol, served here by the cascade.

PersonaPlex's own web and mobile clients connect unchanged:
``GET /v1/duplex?text_prompt=...&voice_prompt=NATF2.pt`` upgrades to a WebSocket; the server
prepares the session, then sends the single byte ``0x00`` (the client sends nothing before it).
Messages are one kind byte and a payload: ``0x01`` Ogg Opus audio (mono, 24 kHz), ``0x02`` text
(UTF-8). Kinds ``0x03``-``0x06`` exist in clients and are ignored, as the real server does.

Like the real model, the server sends one 80 ms output frame for every 80 ms input frame: the
reply's audio when there is some, else silence, so the client's playback stays in step with its
microphone. The persona's ``text_prompt`` becomes the session's instructions.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import numpy as np
import sphn
from aiohttp import WSMsgType, web

from orchestrator.fleet import WakeTimeout
from orchestrator.realtime import SOCKETS
from orchestrator.runtime import RUNTIME
from orchestrator.session import OUT_RATE, CascadeSession, SessionEvent
from services.errors import EngineError

log = logging.getLogger(__name__)
HANDSHAKE, AUDIO, TEXT = b"\x00", 0x01, 0x02
FRAME = 1920  # 80 ms at 24 kHz


class DuplexConnection:
    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.reader = sphn.OpusStreamReader(OUT_RATE)
        self.writer = sphn.OpusStreamWriter(OUT_RATE)
        self.outgoing: deque[np.ndarray] = deque()
        self._partial = np.zeros(0, dtype=np.float32)
        self._in_samples = 0
        self._out_frames = 0
        self._lock = asyncio.Lock()

    async def on_event(self, event: SessionEvent) -> None:
        if event.kind == "reply_audio":
            samples = np.frombuffer(event.audio, dtype=np.int16).astype(np.float32) / 32768.0
            self._queue(samples)
        elif event.kind == "reply_text" and event.text:
            await self._send(bytes([TEXT]) + event.text.encode())
        elif event.kind == "speech_started":
            self.outgoing.clear()  # barge-in: stop talking at once
            self._partial = np.zeros(0, dtype=np.float32)

    def _queue(self, samples: np.ndarray) -> None:
        joined = np.concatenate([self._partial, samples])
        usable = len(joined) // FRAME * FRAME
        for start in range(0, usable, FRAME):
            self.outgoing.append(joined[start : start + FRAME])
        self._partial = joined[usable:]

    async def on_audio(self, session: CascadeSession, payload: bytes) -> None:
        """Decode the client's Opus, feed the session, and answer frame for frame."""
        try:
            pcm = self.reader.append_bytes(payload)
        except ValueError as exc:  # not Ogg Opus: drop it, and start the stream over
            log.warning("duplex: dropped an undecodable audio message (%s)", exc)
            self.reader = sphn.OpusStreamReader(OUT_RATE)
            return
        if pcm is None or len(pcm) == 0:
            return
        await session.append_audio((np.clip(pcm, -1, 1) * 32767).astype(np.int16).tobytes())
        self._in_samples += len(pcm)
        while self._out_frames < self._in_samples // FRAME:
            frame = self.outgoing.popleft() if self.outgoing else np.zeros(FRAME, np.float32)
            self._out_frames += 1
            encoded = self.writer.append_pcm(frame)
            if encoded:
                await self._send(bytes([AUDIO]) + encoded)

    async def _send(self, data: bytes) -> None:
        async with self._lock:
            if not self.ws.closed:
                await self.ws.send_bytes(data)


async def duplex(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    text_prompt = request.query.get("text_prompt", "").strip()
    if not text_prompt:
        raise web.HTTPBadRequest(text="text_prompt is required and must not be empty")
    voice = request.query.get("voice_prompt") or None
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=1 << 20)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)  # closed on shutdown with the Realtime sockets
    connection = DuplexConnection(ws)
    session = CascadeSession(runtime, connection.on_event)
    session.configure(instructions=text_prompt, voice=None, vad=None, vad_enabled=True)
    log.info("duplex session %s on the cascade (voice prompt %s)", session.id, voice)
    try:
        try:
            await session.open()
        except (EngineError, WakeTimeout) as exc:
            await ws.close(code=1011, message=str(exc)[:120].encode())
            return ws
        await ws.send_bytes(HANDSHAKE)
        async for message in ws:
            if message.type is not WSMsgType.BINARY or not message.data:
                continue  # the real server ignores anything but binary messages
            kind, payload = message.data[0], message.data[1:]
            if kind == AUDIO:
                await connection.on_audio(session, payload)
    finally:
        await session.close()
        await ws.close()
    return ws


def add_duplex_routes(app: web.Application) -> None:
    app.router.add_get("/v1/duplex", duplex)
