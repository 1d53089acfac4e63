"""``/v1/duplex`` routing and failover: PersonaPlex (tests/peers/personaplex_peer.py, supervised
by the runtime as the real server would be) takes one conversation, the cascade (tiny real
engines) the others, and a conversation moves to the cascade when the server dies, hangs or is
stopped, on the same socket."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import sphn
from aiohttp.test_utils import TestServer

from orchestrator.api.keys import DUPLEX_ROUTER
from orchestrator.app.runtime import Runtime
from orchestrator.duplex.routing import DuplexUnavailable, Route, choose
from services.base import EngineState
from tests.conftest import API_KEY, RuntimeFactory
from tests.duplex_helpers import (
    ServerFactory,
    duplex_servers,
    kill,
    only_session,
    until_events,
)
from tests.peers.watch import alive, until_dead
from tests.speech import speak

FRAME, RATE = 1920, 24_000
AUTH = {"Authorization": f"Bearer {API_KEY}"}
PERSONA = "text_prompt=You%20are%20a%20maths%20tutor.&voice_prompt=NATF2.pt"


@pytest.fixture
def make_server(
    cascade_config_file: Path, tmp_path: Path, make_runtime: RuntimeFactory, aiohttp_server: Any
) -> ServerFactory:
    return duplex_servers(cascade_config_file, tmp_path, make_runtime, aiohttp_server)


class Caller:
    """A PersonaPlex-protocol client: waits for 0x00, streams frames, counts what comes back."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.writer = sphn.OpusStreamWriter(RATE)
        self.reader = sphn.OpusStreamReader(RATE)
        self.sent = 0
        self.heard = 0
        self.texts: list[str] = []
        self.peak = 0.0  # the loudest sample heard (reset it to listen for something new)
        self._got = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None
        self._listener = asyncio.create_task(self._listen())

    @classmethod
    async def dial(cls, server: TestServer, query: str = PERSONA) -> Caller:
        http = aiohttp.ClientSession()
        url = f"http://{server.host}:{server.port}/v1/duplex?{query}"
        try:
            ws = await http.ws_connect(url, headers=AUTH)
            first = await asyncio.wait_for(ws.receive(), 60)
        except BaseException:
            await http.close()
            raise
        assert first.data == b"\x00", "the handshake comes first"
        caller = cls(ws)
        caller._http = http
        return caller

    async def _listen(self) -> None:
        async for message in self.ws:
            if message.type is not aiohttp.WSMsgType.BINARY:
                continue
            if message.data[:1] == b"\x02":
                self.texts.append(message.data[1:].decode())
            elif message.data[:1] == b"\x01":
                pcm = self.reader.append_bytes(message.data[1:])
                if pcm is not None and len(pcm):
                    self.heard += len(pcm)
                    self.peak = max(self.peak, float(np.abs(pcm).max()))
            self._got.set()

    async def talk(self, frames: int, *, lag: int = 2, timeout_s: float = 30) -> None:
        """Send frames of faint noise one by one, in step with the answers."""
        rng = np.random.default_rng(self.sent)
        for _ in range(frames):
            await self.send((rng.standard_normal(FRAME) * 0.01).astype(np.float32), lag, timeout_s)

    async def say(self, audio: np.ndarray, *, lag: int = 2, timeout_s: float = 30) -> None:
        """Stream recorded speech in 80 ms frames, in step with the answers."""
        for start in range(0, len(audio) - FRAME + 1, FRAME):
            await self.send(audio[start : start + FRAME].astype(np.float32), lag, timeout_s)

    async def send(self, frame: np.ndarray, lag: int, timeout_s: float) -> None:
        """One frame, once the answers are at most ``lag`` frames behind."""
        await self.ws.send_bytes(b"\x01" + self.writer.append_pcm(frame))
        self.sent += 1
        async with asyncio.timeout(timeout_s):
            while self.heard < (self.sent - lag) * FRAME:
                assert not self.ws.closed, f"closed: {self.ws.close_code}"
                self._got.clear()
                await self._got.wait()

    async def hang_up(self) -> None:
        await self.ws.close()
        await asyncio.gather(self._listener, return_exceptions=True)
        if self._http is not None:
            await self._http.close()


def test_the_routing_table() -> None:
    free = {"configured": True, "loaded": True, "holder": None}
    assert choose("duplex-first", **free) == Route("duplex", "the duplex engine is free")
    assert choose("cascade-only", **free).backend == "cascade"
    assert choose("duplex-first", **{**free, "holder": "s1"}).backend == "cascade"
    cold = choose("duplex-first", **{**free, "loaded": False})
    assert cold.backend == "cascade" and cold.wake
    assert choose("duplex-only", **{**free, "loaded": False}).backend == "duplex"
    with pytest.raises(DuplexUnavailable, match="another conversation"):
        choose("duplex-only", **{**free, "holder": "s1"})
    with pytest.raises(DuplexUnavailable, match="configured"):
        choose("duplex-only", **{**free, "configured": False})
    assert choose("duplex-first", **{**free, "configured": False}).backend == "cascade"


async def test_one_conversation_on_personaplex_the_next_on_the_cascade_at_once(
    make_server: ServerFactory,
) -> None:
    server, runtime = await make_server()
    await runtime.fleet.load("duplex")
    closed = runtime.bus.subscribe()
    first = await Caller.dial(server)
    try:
        await first.talk(10)
        assert first.texts, "PersonaPlex's text pieces arrive as 0x02"
        second = await Caller.dial(server)  # not kept waiting behind the first
        try:
            await second.talk(3)
            backends = sorted(s["backend"] for s in runtime.session_summaries())
            assert backends == ["cascade", "duplex"]
        finally:
            await second.hang_up()
    finally:
        await first.hang_up()
    routed = [e.data for e in runtime.bus.recent("session.routed")]
    assert [r["backend"] for r in routed] == ["duplex", "cascade"]
    assert "in conversation" in routed[1]["reason"]
    async with asyncio.timeout(10):  # the server side ends after the client close
        ended = {e.data["session"] async for e in until_events(closed, "session.closed", 2)}
    assert len(ended) == 2 and runtime.sessions == {}
    assert server.app[DUPLEX_ROUTER].holder is None
    closed.close()


async def test_a_busy_engine_is_503_under_duplex_only_and_a_bad_voice_is_400(
    make_server: ServerFactory,
) -> None:
    server, runtime = await make_server(policy="duplex-only")
    first = await Caller.dial(server)  # duplex-only waits for the engine to load
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://{server.host}:{server.port}/v1/duplex?{PERSONA}"
            with pytest.raises(aiohttp.WSServerHandshakeError) as busy:
                await http.ws_connect(url, headers=AUTH)
            assert busy.value.status == 503
            bad = url.replace("NATF2.pt", "NOPE.pt")
            with pytest.raises(aiohttp.WSServerHandshakeError) as wrong:
                await http.ws_connect(bad, headers=AUTH)
            assert wrong.value.status == 400
        await first.talk(3)
        assert only_session(runtime)["backend"] == "duplex"
    finally:
        await first.hang_up()


async def unload(runtime: Runtime) -> None:
    await runtime.fleet.engine("duplex").unload()


@pytest.mark.parametrize("how", ["killed", "hangs", "unloaded"])
async def test_the_conversation_moves_to_the_cascade_on_the_same_socket(
    make_server: ServerFactory, how: str
) -> None:
    server, runtime = await make_server(extra_args='"--hang-after", "8"' if how == "hangs" else "")
    await runtime.fleet.load("duplex")
    runtime.fleet.prewarm(["vad", "asr", "llm", "tts"])  # as a failover-ready deployment would
    moved = runtime.bus.subscribe()
    caller = await Caller.dial(server)
    try:
        await caller.talk(6)
        assert only_session(runtime)["backend"] == "duplex"
        if how == "killed":
            kill(runtime)
        elif how == "unloaded":
            await unload(runtime)
        failover = asyncio.create_task(anext(until_events(moved, "session.failover", 1)))
        async with asyncio.timeout(60):
            while not failover.done():  # keep streaming: every frame is answered meanwhile
                await caller.talk(1)
        event = failover.result()
        await caller.talk(10)  # answered by the cascade now
        summary = only_session(runtime)
        assert summary["backend"] == "cascade", summary
        assert caller.heard >= (caller.sent - 2) * FRAME
        cascade = runtime.sessions[summary["id"]].backend.session
        said = "".join(runtime.sessions[summary["id"]].transcript).strip()
        assert said and said in cascade.instructions, "what PersonaPlex said is the context"
    finally:
        moved.close()
        await caller.hang_up()
    failover = event.data
    assert failover["source"] == "duplex" and failover["target"] == "cascade"
    assert failover["gap_s"] < 30, failover
    if how == "hangs":
        assert "hangs" in failover["reason"]
    assert summary["failovers"][0]["reason"] == failover["reason"]
    assert failover["context_chars"] == summary["transcript_chars"]


async def test_stopping_the_server_mid_conversation_leaves_nothing_behind(
    make_server: ServerFactory, make_runtime: RuntimeFactory
) -> None:
    server, runtime = await make_server()
    await runtime.fleet.load("duplex")
    process = runtime.fleet.engine("duplex").process  # type: ignore[attr-defined]
    pid = process.pid
    caller = await Caller.dial(server)
    await caller.talk(3)
    await server.close()  # the app's shutdown closes the socket; the session ends
    await make_runtime.stop(runtime)
    async with asyncio.timeout(10):
        await caller._listener
    assert caller.ws.closed and runtime.sessions == {}
    await until_dead(pid)
    assert not alive(pid)
    assert runtime.fleet.engine("duplex").state is EngineState.UNLOADED
    await caller.hang_up()


async def test_after_a_failover_the_cascade_answers_what_the_user_says(
    make_server: ServerFactory,
) -> None:
    """Not only frames in step: the cascade hears the speech and talks back on the same socket."""
    server, runtime = await make_server()
    await runtime.fleet.load("duplex")
    await asyncio.gather(*(runtime.fleet.load(n) for n in ("vad", "asr", "llm", "tts")))
    moved = runtime.bus.subscribe()
    caller = await Caller.dial(server)
    try:
        await caller.talk(6)
        kill(runtime)
        failover = asyncio.create_task(anext(until_events(moved, "session.failover", 1)))
        async with asyncio.timeout(60):
            while not failover.done():
                await caller.talk(1)
        pieces_before, caller.peak = len(caller.texts), 0.0
        await caller.say(speak("Can you help me with fractions, please?", RATE))
        quiet = np.zeros(FRAME, dtype=np.float32)
        loop = asyncio.get_running_loop()
        tick = loop.time()
        async with asyncio.timeout(120):  # then silence, the turn's end, until the reply is heard
            while len(caller.texts) == pieces_before or caller.peak < 0.01:
                # a microphone's pace (80 ms a frame), as real clients stream: a flood faster
                # than real time would keep the event loop's thread too busy to let the LLM's
                # generation thread run
                tick += FRAME / RATE
                await asyncio.sleep(max(0.0, tick - loop.time()))
                await caller.send(quiet, lag=2, timeout_s=30)
        reply = "".join(caller.texts[pieces_before:])
        assert reply.strip(), "the cascade's reply text arrives as 0x02"
        assert only_session(runtime)["backend"] == "cascade"
    finally:
        moved.close()
        await caller.hang_up()
