"""The wire protocol of Microsoft's VibeVoice-Realtime demo server (``demo/web/app.py``).

One WebSocket per utterance: ``GET /stream?text=..&voice=..&cfg=..&steps=..`` (the text rides
in the query: nothing is sent on the socket). The server answers with two kinds of message:

    kind    what                                                   here
    ------  -----------------------------------------------------  --------------------------
    binary  a chunk of PCM16 mono audio at 24 kHz, as it is made   yielded at once
    text    ``{"type": "log", "event", "data", "timestamp"}``      ``LogMessage``; events below

    event                     meaning                                  here
    ------------------------  ---------------------------------------  ------------------------
    backend_busy              another stream holds the server; close   ``ServerBusy`` (retry)
                              1013 "Service busy" follows
    backend_request_received  the stream starts                        noted
    model_progress            a chunk was made (generated_sec)         noted
    backend_first_chunk_sent  the first chunk went out                 noted
    generation_error,         the model failed (message)               ``EngineCallError``
    backend_error
    backend_stream_complete   nothing more comes; close 1000 follows   the normal end

A stream that closes without ``backend_stream_complete`` (the process died, the connection
broke) is ``ServerUnavailable``: the fallback chain may take over. Closing our end stops the
generation: the server notices when its next chunk cannot be sent. The server takes one stream
at a time and never queues; the engine (``services.vibevoice_realtime``) keeps to one.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp

from services.errors import EngineCallError
from services.server_errors import ServerBusy, ServerUnavailable

SAMPLE_RATE = 24_000
STREAM_PATH = "/stream"
CONFIG_PATH = "/config"
CLOSE_BUSY = 1013

LOG = "log"  # the one kind of text message
BUSY = "backend_busy"
REQUEST_RECEIVED = "backend_request_received"
PROGRESS = "model_progress"
FIRST_CHUNK_SENT = "backend_first_chunk_sent"
GENERATION_ERROR = "generation_error"
BACKEND_ERROR = "backend_error"
CLIENT_DISCONNECTED = "client_disconnected"
STREAM_COMPLETE = "backend_stream_complete"
ERRORS = (GENERATION_ERROR, BACKEND_ERROR)


@dataclass(frozen=True)
class LogMessage:
    """One text message of the server: an event with its data and the server's timestamp."""

    event: str
    data: Mapping[str, Any] = field(default_factory=dict)
    timestamp: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.data)
        return {"type": LOG, "event": self.event, "data": data, "timestamp": self.timestamp}

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> LogMessage:
        """ValueError for anything but a log message with an event name."""
        if body.get("type") != LOG or not isinstance(body.get("event"), str):
            raise ValueError(f"not a log message: {str(body)[:200]}")
        data = body.get("data")
        stamp = str(body.get("timestamp", ""))
        return cls(body["event"], data if isinstance(data, dict) else {}, stamp)

    @classmethod
    def parse(cls, text: str) -> LogMessage:
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"not JSON: {text[:200]!r}") from exc
        if not isinstance(body, dict):
            raise ValueError(f"not a log message: {text[:200]!r}")
        return cls.from_dict(body)


def stream_url(base_url: str, text: str, voice: str, params: Mapping[str, object]) -> str:
    """``ws://HOST:PORT/stream?...`` for ``text`` in ``voice`` (``params``: cfg, steps)."""
    root = re.sub(r"^http", "ws", base_url.rstrip("/"), count=1)
    query = {"text": text, "voice": voice, **{k: str(v) for k, v in params.items()}}
    return f"{root}{STREAM_PATH}?{urlencode(query)}"


def split_text(text: str, fits: Callable[[str], bool]) -> list[str]:
    """``text`` in pieces that each ``fits`` (the request line has a limit: the server's
    websockets layer refuses a line over 8 KiB): whole sentences together while they fit; a
    sentence too long starts a piece of its own and is cut between words (a word too long, as
    many characters as fit). In order; joined, they say the whole text."""
    text = text.strip()
    if fits(text):
        return [text]
    pieces: list[str] = []
    current = ""
    for sentence in re.split(r"(?<=[.!?;:])\s+", text):
        parts = [sentence] if fits(sentence) else _cut(sentence, fits)
        if len(parts) > 1 and current:
            pieces.append(current)
            current = ""
        for part in parts:
            joined = f"{current} {part}" if current else part
            if fits(joined):
                current = joined
                continue
            if current:
                pieces.append(current)
            current = part
    if current:
        pieces.append(current)
    return pieces


def _cut(sentence: str, fits: Callable[[str], bool]) -> list[str]:
    """A sentence's words; a word too long, as many characters as fit."""
    parts: list[str] = []
    for word in sentence.split():
        while not fits(word) and len(word) > 1:
            cut = 1
            while cut + 1 < len(word) and fits(word[: cut + 1]):
                cut += 1
            parts.append(word[:cut])
            word = word[cut:]
        parts.append(word)
    return parts


async def stream_pcm(
    http: aiohttp.ClientSession,
    url: str,
    *,
    engine: str,
    receive_timeout_s: float,
    close_timeout_s: float,
    on_log: Callable[[LogMessage], object] | None = None,
) -> AsyncGenerator[bytes, None]:
    """The audio of one stream, each chunk as it arrives (an even number of bytes). Closing the
    generator closes the socket, which stops the generation."""
    try:
        ws = await http.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=close_timeout_s))
    except aiohttp.WSServerHandshakeError as exc:
        raise ServerUnavailable(f"stream: HTTP {exc.status} at the upgrade", engine=engine) from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise ServerUnavailable(f"stream: cannot connect ({exc})", engine=engine) from exc
    complete, busy, problem, carry = False, False, None, b""
    try:
        while True:
            try:
                message = await ws.receive(timeout=receive_timeout_s)
            except TimeoutError as exc:
                raise ServerUnavailable(
                    f"stream: nothing from the server for {receive_timeout_s:g} s", engine=engine
                ) from exc
            if message.type is aiohttp.WSMsgType.BINARY:
                data = carry + message.data
                whole = len(data) - len(data) % 2
                carry = data[whole:]
                if whole:
                    yield data[:whole]
            elif message.type is aiohttp.WSMsgType.TEXT:
                try:
                    log = LogMessage.parse(message.data)
                except ValueError:
                    continue  # the demo page ignores what it cannot read; so do we
                if on_log is not None:
                    on_log(log)
                busy = busy or log.event == BUSY
                complete = complete or log.event == STREAM_COMPLETE
                if log.event in ERRORS and problem is None:
                    problem = str(log.data.get("message") or log.event)
            else:  # CLOSE, CLOSING, CLOSED, ERROR: the stream is over
                break
    except aiohttp.ClientError as exc:
        raise ServerUnavailable(f"stream: connection failed ({exc})", engine=engine) from exc
    finally:
        if not ws.closed:
            await ws.close()
    code = ws.close_code
    if busy or code == CLOSE_BUSY:
        raise ServerBusy("the server is speaking for another client", engine=engine)
    if problem is not None:
        raise EngineCallError(f"generation failed: {problem}", engine=engine)
    if not complete:
        raise ServerUnavailable(
            f"the stream broke off before the server said it was complete (close code {code})",
            engine=engine,
        )
