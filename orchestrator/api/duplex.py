"""``/v1/duplex``: the PersonaPlex (Moshi) wire protocol, served by PersonaPlex or the cascade.

PersonaPlex's own web and mobile clients connect unchanged:
``GET /v1/duplex?text_prompt=...&voice_prompt=NATF2.pt`` upgrades to a WebSocket; the server
prepares the session, then sends the single byte ``0x00`` (the client sends nothing before it).
Messages are one kind byte and a payload: ``0x01`` Ogg Opus audio (mono, 24 kHz), ``0x02`` text
(UTF-8). Kinds ``0x03``-``0x06`` exist in clients and are ignored, as the real server does.

The router gives the session to the duplex engine when the policy allows and it is free, else
to the cascade, at once (a client never waits silently on a busy server); with ``duplex-only``
a busy engine is a 503 before the upgrade. Either way the server sends one 80 ms output frame
for every 80 ms input frame, from one Ogg stream for the whole session, so a move to the
cascade mid-session (``orchestrator.duplex.session``) is heard as a short silence, not a drop.

The Realtime route's limits hold here too (``orchestrator.api.limits``): sessions per API key
(a 429 before the upgrade; Realtime and duplex sessions count together), ``max_minutes`` (then
a close 1000 saying so), and a message over 1 MiB closes with 1009 and a reason.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

import numpy as np
import sphn
from aiohttp import WSCloseCode, WSMsgType, web

from orchestrator.api import limits
from orchestrator.api.keys import DUPLEX_ROUTER, SOCKETS
from orchestrator.app.runtime import RUNTIME
from orchestrator.duplex.routing import DuplexRouter
from orchestrator.duplex.session import DuplexSession
from services.base import DuplexModel, Pcm
from services.duplex_protocol import SAMPLE_RATE, Audio, Handshake, Text, required_text_prompt
from services.errors import EngineError
from services.ogg import OggCounter, OggError, OggSplicer

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 1 << 20


class DuplexSocket:
    """The client's side of a session: Ogg Opus in and out, text out, one send at a time.

    In, the client's Ogg bytes go to a duplex engine as they came, counted from their granule
    positions; they are decoded only for the cascade (or once the engine failed), by a reader
    started, if need be, mid-stream from the stream's header pages. Out, the engine's own pages
    are passed on and our encoder speaks only for the cascade and silence; ``OggSplicer`` keeps
    both one Ogg stream for the client. Nothing is encoded twice.
    """

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.reader: sphn.OpusStreamReader | None = None  # started when audio is wanted
        self.writer = sphn.OpusStreamWriter(SAMPLE_RATE)
        self.counter = OggCounter(SAMPLE_RATE)
        self.splicer = OggSplicer()
        self._pass_pages = True  # False once the engine's pages could not be spliced
        self._lock = asyncio.Lock()
        self.end_reason: str | None = None

    def count(self, ogg: bytes) -> int | None:
        """The samples the client's Ogg bytes carry; None for a message that is not Ogg (it
        is dropped)."""
        try:
            return self.counter.count(ogg)
        except OggError as exc:
            log.warning("duplex: dropped an audio message that is not Ogg (%s)", exc)
            return None

    def decode(self, ogg: bytes) -> Pcm | None:
        """The client's audio; an undecodable message is dropped and the stream starts over."""
        if self.reader is None:  # mid-stream, after counting: the stream's headers first
            self.reader = sphn.OpusStreamReader(SAMPLE_RATE)
            if self.counter.headers and not ogg.startswith(self.counter.headers):
                self.reader.append_bytes(self.counter.headers)
        try:
            pcm = self.reader.append_bytes(ogg)
        except ValueError as exc:
            log.warning("duplex: dropped an undecodable audio message (%s)", exc)
            self.reader = sphn.OpusStreamReader(SAMPLE_RATE)
            return None
        if pcm is None or len(pcm) == 0:
            return None
        return np.clip(np.asarray(pcm, dtype=np.float32), -1, 1)

    async def audio(self, frame: Pcm, ogg: bytes = b"") -> None:
        """Audio to the client: the engine's own pages when it sent some, else ``frame``
        encoded here."""
        if ogg and self._pass_pages:
            try:
                pages = self.splicer.feed(ogg, "engine")
            except OggError as exc:
                log.warning("duplex: the engine's pages cannot be passed on (%s): encoding", exc)
                self._pass_pages = False  # one source after the other: from here on, ours
            else:
                if pages:
                    await self._send(Audio(pages).encode())
                return
        encoded = self.writer.append_pcm(np.asarray(frame, dtype=np.float32))
        if encoded and (pages := self.splicer.feed(encoded, "ours")):
            await self._send(Audio(pages).encode())

    async def text(self, piece: str) -> None:
        await self._send(Text(piece).encode())

    async def end(self, reason: str) -> None:
        self.end_reason = reason
        await self.ws.close(code=1011, message=reason[:120].encode())

    async def _send(self, data: bytes) -> None:
        async with self._lock:
            if not self.ws.closed:
                await self.ws.send_bytes(data)


def check_persona(router: DuplexRouter, request: web.Request) -> None:
    """A bad persona is a 400 (``invalid_input``) before the upgrade, whichever back-end
    would serve it."""
    text_prompt = required_text_prompt(request.query)
    name = router.engine_name
    if name is not None:
        engine = router.fleet.engine(name)
        if isinstance(engine, DuplexModel):
            engine.persona(text_prompt, request.query.get("voice_prompt") or None)


async def duplex(request: web.Request) -> web.StreamResponse:
    check_persona(request.app[DUPLEX_ROUTER], request)
    async with limits.session_slot(request):  # a 429 before the upgrade
        return await _serve(request)


async def _serve(request: web.Request) -> web.WebSocketResponse:
    runtime = request.app[RUNTIME]
    router = request.app[DUPLEX_ROUTER]
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=limits.protocol_limit(MAX_MESSAGE_BYTES))
    socket = DuplexSocket(ws)
    session = DuplexSession(
        runtime.session_deps(),
        router,
        socket,
        text_prompt=request.query.get("text_prompt"),
        voice_prompt=request.query.get("voice_prompt") or None,
    )
    session.claim()  # DuplexUnavailable: a 503 with Retry-After, before the upgrade
    try:
        await ws.prepare(request)
        request.app[SOCKETS].add(ws)  # closed on shutdown with the Realtime sockets
        await session.start()
        log.info("duplex session %s on the %s", session.id, session.summary()["backend"])
        await ws.send_bytes(Handshake().encode())
        async with limits.session_deadline(request):
            async for message in ws:
                if (size := limits.too_big(message, MAX_MESSAGE_BYTES)) is not None:
                    await limits.close_too_big(ws, size, MAX_MESSAGE_BYTES)
                elif message.type is not WSMsgType.BINARY or not message.data:
                    continue  # the real server ignores anything but binary messages
                elif message.data[0] == Audio.KIND:
                    ogg = message.data[1:]
                    if not session.hears_ogg:
                        if (pcm := socket.decode(ogg)) is not None:
                            await session.feed(pcm)
                    elif (samples := socket.count(ogg)) is not None:
                        await session.feed_ogg(ogg, samples, partial(socket.decode, ogg))
    except TimeoutError:
        minutes = runtime.config.sessions.max_minutes
        await ws.close(
            code=WSCloseCode.OK, message=f"session limit of {minutes:g} minutes".encode()
        )
    except EngineError as exc:
        log.warning("duplex session %s ended: %s", session.id, exc)
        await ws.close(code=1011, message=str(exc)[:120].encode())
    finally:
        # aiohttp cancels the handler once the client's connection drops: the cleanup must
        # finish anyway (lease, slot, the server-side conversation), so it is shielded.
        await asyncio.shield(_end(session, ws))
    return ws


async def _end(session: DuplexSession, ws: web.WebSocketResponse) -> None:
    await session.close()
    await ws.close()


def add_duplex_routes(app: web.Application) -> None:
    runtime = app[RUNTIME]
    app[DUPLEX_ROUTER] = DuplexRouter(runtime.config.duplex, runtime.fleet)
    app.router.add_get("/v1/duplex", duplex)
