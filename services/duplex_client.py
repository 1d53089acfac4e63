"""A client for one PersonaPlex conversation (``/api/chat``), as its own web client behaves.

The order matters and is enforced by construction: ``connect()`` returns a connection
only after the server's 0x00 handshake, so nothing can be sent before it (the server's prefill
reads and throws away early messages, and a lost OpusHead page ends the session). Audio goes out
as Ogg Opus from one writer per connection (its first page is the stream's BOS page), one 80 ms
frame at a time, or, when the caller has the client's own Ogg Opus stream (``/v1/duplex``), as
that stream's bytes (``send_ogg``: no encoding again); one or the other for a whole connection.
The caller streams continuously, silence when muted, because the model only advances when audio
arrives. Audio that comes back keeps its Ogg pages (``AudioOut.ogg``) beside the decoded PCM.
``close()`` keeps the socket up to ``tail_s`` after the last frame, so the reply to the last
frames still arrives. The persona is ``text_prompt`` (required, non-empty) and ``voice_prompt``
(a file in the server's voice directory); ``seed`` is never sent: the server reads it from the
wrong place and drops the session.

One server, one connection of ours, also by construction: ``connect()`` takes the server's
``ConnectionSlot`` before any byte goes out and the connection gives it back on ``close()``; a
second ``connect()`` meanwhile is refused here (``ConnectionBusy``). The server would instead
queue it silently, and it reads the persona into state shared by all connections *before* it
waits for its one-conversation lock: of two connections queued behind a third, the first to get
the lock starts with the persona of the last to connect.

It implements the duplex role's contract (``services.base.DuplexModel``, ``DuplexConnection``)
for ``services.personaplex``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
import numpy as np
import sphn

from services.base import AudioOut, Output, Pcm, Persona, TextOut
from services.duplex_protocol import (
    FRAME_SAMPLES,
    SAMPLE_RATE,
    Audio,
    Handshake,
    ProtocolError,
    Text,
    decode,
)
from services.errors import EngineCallError, InvalidInput

log = logging.getLogger(__name__)


class SessionEnded(EngineCallError):
    """The server closed the conversation, or the connection to it broke."""

    code = "duplex_session_ended"


class ConnectionBusy(EngineCallError):
    """Our one connection to this server is taken: a second is refused before it is opened."""

    code = "duplex_busy"
    status = 503


class ConnectionSlot:
    """The one connection we may hold to one PersonaPlex server process.

    ``connect()`` takes it before it opens the socket and the connection releases it when it
    closes (or ``connect()`` does, when it fails). The engine keeps one per server it runs."""

    def __init__(self, server: str) -> None:
        self.server = server
        self._taken = False
        self.refused = 0  # connections refused because the slot was taken

    @property
    def taken(self) -> bool:
        return self._taken

    def take(self, name: str) -> None:
        """Claim the slot, or raise ConnectionBusy (nothing has been sent)."""
        if self._taken:
            self.refused += 1
            raise ConnectionBusy(
                f"{self.server} already has a conversation of ours; a second would queue at the "
                "server and could start with the first one's persona",
                engine=name,
            )
        self._taken = True

    def release(self) -> None:
        self._taken = False


class HandshakeTimeout(EngineCallError):
    """No 0x00 within the timeout: the server is busy with another conversation, or stuck."""

    code = "duplex_busy"
    status = 503


def make_persona(
    text_prompt: str | None, voice_prompt: str | None, voices: tuple[str, ...], default_voice: str
) -> Persona:
    """Check a persona before it reaches the server (which would close without a word)."""
    text = (text_prompt or "").strip()
    if not text:
        raise InvalidInput("text_prompt is required and must not be empty")
    voice = voice_prompt or default_voice
    if voice not in voices:
        raise InvalidInput(f"voice_prompt {voice!r} is not one of: {', '.join(voices)}")
    return Persona(text, voice)


class PersonaPlexConnection:
    """One conversation after its handshake (the contract's ``DuplexConnection``): send
    frames, receive audio and text, close."""

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        http: aiohttp.ClientSession,
        *,
        name: str,
        tail_s: float,
        slot: ConnectionSlot | None = None,
    ) -> None:
        self._ws = ws
        self._http = http
        self._slot = slot  # released on close()
        self.name = name
        self.tail_s = tail_s
        self._writer = sphn.OpusStreamWriter(SAMPLE_RATE)
        self._reader = sphn.OpusStreamReader(SAMPLE_RATE)
        self.samples_sent = 0
        self.samples_received = 0
        self.text_received = 0
        self.ignored = 0  # messages that were not audio or text (logged, skipped)
        self._received = asyncio.Event()
        self._fed_by: str | None = None  # "frames" (our encoder) or "ogg" (the client's stream)
        self._headers = b""  # pages that decoded to no audio yet: they go with the next audio

    @property
    def closed(self) -> bool:
        return self._ws.closed

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code

    async def send_frame(self, pcm: Pcm) -> None:
        """Encode and send audio (normally one 80 ms frame); raises SessionEnded once closed."""
        self._check_open()
        self._feeding("frames")
        encoded = self._writer.append_pcm(np.asarray(pcm, dtype=np.float32))
        self.samples_sent += len(pcm)
        if encoded:
            await self._send(encoded)

    async def send_ogg(self, ogg: bytes, samples: int) -> None:
        """Send the client's own Ogg Opus bytes as they came (``services.ogg.OggOpusInput``):
        no encoding again, and the server hears the client's stream itself."""
        self._check_open()
        self._feeding("ogg")
        self.samples_sent += samples
        await self._send(ogg)

    def _check_open(self) -> None:
        if self._ws.closed:
            raise SessionEnded(f"connection closed ({self._ws.close_code})", engine=self.name)

    def _feeding(self, how: str) -> None:
        """The server reads one Ogg stream: ours (frames) or the client's (ogg), never both."""
        if self._fed_by is None:
            self._fed_by = how
        elif self._fed_by != how:
            raise RuntimeError(f"this conversation is fed {self._fed_by}, not {how}")

    async def _send(self, ogg: bytes) -> None:
        try:
            await self._ws.send_bytes(Audio(ogg).encode())
        except (ConnectionError, aiohttp.ClientError) as exc:
            raise SessionEnded(f"sending audio: {exc}", engine=self.name) from exc

    async def receive(self) -> Output:
        """The next audio or text from the model; SessionEnded when the conversation ends."""
        while True:
            message = await self._ws.receive()
            if message.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
            ):
                raise SessionEnded(
                    f"the server closed the conversation ({self._ws.close_code})", engine=self.name
                )
            if message.type is aiohttp.WSMsgType.ERROR:
                raise SessionEnded(f"connection broke: {message.data}", engine=self.name)
            if message.type is not aiohttp.WSMsgType.BINARY:
                self.ignored += 1
                continue
            output = self._output(message.data)
            if output is not None:
                return output

    def _output(self, data: bytes) -> Output | None:
        try:
            parsed = decode(data)
        except ProtocolError as exc:
            log.info("%s: skipped a message: %s", self.name, exc)
            self.ignored += 1
            return None
        if isinstance(parsed, Text):
            self.text_received += 1
            return TextOut(parsed.text)
        if not isinstance(parsed, Audio):
            self.ignored += 1
            return None
        try:
            pcm = self._reader.append_bytes(parsed.ogg)
        except ValueError as exc:
            log.warning("%s: undecodable audio from the server: %s", self.name, exc)
            self.ignored += 1
            return None
        if pcm is None or len(pcm) == 0:
            self._headers += parsed.ogg  # the stream's header pages
            return None
        self.samples_received += len(pcm)
        self._received.set()
        ogg, self._headers = self._headers + parsed.ogg, b""
        return AudioOut(np.asarray(pcm, dtype=np.float32), ogg)

    async def drain_tail(self, tail_s: float | None = None) -> None:
        """Wait (at most ``tail_s``) until the audio sent so far has been answered; whoever
        calls ``receive()`` meanwhile gets the tail."""
        limit = self.tail_s if tail_s is None else tail_s
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                while not self._ws.closed and self.samples_received < self.samples_sent:
                    self._received.clear()
                    await self._received.wait()

    async def close(self) -> None:
        """Close the socket and the HTTP session, then free the server's slot; safe to call
        twice."""
        try:
            with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                await self._ws.close()
        finally:
            try:
                await self._http.close()  # closes the socket too if the close was cut short
            finally:
                slot, self._slot = self._slot, None
                if slot is not None:
                    slot.release()


async def connect(
    url: str,
    persona: Persona,
    *,
    slot: ConnectionSlot,
    name: str = "duplex",
    handshake_timeout_s: float = 30.0,
    connect_timeout_s: float = 5.0,
    tail_s: float = 1.0,
    headers: dict[str, str] | None = None,
) -> PersonaPlexConnection:
    """Open ``{url}/api/chat`` for ``persona`` and wait for the 0x00 handshake.

    ``slot`` is the server's: while it is taken, ``ConnectionBusy`` and nothing is sent. The
    server accepts the upgrade at once and then waits on its single-conversation lock, so a
    server busy with someone else's conversation shows up as a ``HandshakeTimeout``. A server
    that rejects the persona closes without a handshake: ``SessionEnded``."""
    slot.take(name)
    ws_url = url.rstrip("/").replace("http://", "ws://").replace("https://", "wss://")
    http = aiohttp.ClientSession(
        trust_env=False, timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s)
    )
    try:
        ws = await http.ws_connect(
            f"{ws_url}/api/chat",
            params=persona.query(),
            headers=headers,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
            max_msg_size=1 << 22,
        )
    except BaseException as exc:  # cancelled too: no socket may outlive the slot
        try:
            await http.close()
        finally:
            slot.release()
        if isinstance(exc, aiohttp.ClientError | OSError | TimeoutError):
            raise SessionEnded(f"cannot connect to {url}: {exc!r}", engine=name) from exc
        raise
    connection = PersonaPlexConnection(ws, http, name=name, tail_s=tail_s, slot=slot)
    try:
        await _await_handshake(ws, name, handshake_timeout_s)
    except BaseException:
        await connection.close()
        raise
    return connection


async def _await_handshake(
    ws: aiohttp.ClientWebSocketResponse, name: str, timeout_s: float
) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            message = await ws.receive()
    except TimeoutError:
        raise HandshakeTimeout(
            f"no handshake within {timeout_s:g} s (busy with another conversation?)", engine=name
        ) from None
    if message.type is not aiohttp.WSMsgType.BINARY:
        raise SessionEnded(
            f"closed before the handshake ({ws.close_code}): the server rejected the persona "
            "(text_prompt, voice_prompt) or failed",
            engine=name,
        )
    try:
        first = decode(message.data)
    except ProtocolError as exc:
        raise SessionEnded(f"bad first message: {exc}", engine=name) from None
    if not isinstance(first, Handshake):
        raise SessionEnded(f"expected the 0x00 handshake first, got {first!r:.60}", engine=name)


__all__ = [
    "FRAME_SAMPLES",
    "ConnectionBusy",
    "ConnectionSlot",
    "HandshakeTimeout",
    "PersonaPlexConnection",
    "SessionEnded",
    "connect",
    "make_persona",
]
