"""``/v1/realtime`` with ``session.backend = "duplex"``: a Realtime client talks to PersonaPlex
(tests/peers/personaplex_peer.py, supervised by the runtime) frame for frame; a second one is
routed to the cascade; bad switches are refused with the connection still usable; a crash is
seen as ``session.backend_changed``; closing the socket gives the engine back."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestServer

from orchestrator.api.keys import DUPLEX_ROUTER
from orchestrator.app.runtime import Runtime
from tests.conftest import RuntimeFactory
from tests.duplex_helpers import ServerFactory, duplex_servers, kill
from tests.realtime_client import Socket, connect

FRAME = 1920  # 80 ms at 24 kHz
PERSONA = {"backend": "duplex", "instructions": "You are a maths tutor.", "voice": "NATF2"}


@pytest.fixture
def make_server(
    cascade_config_file: Path, tmp_path: Path, make_runtime: RuntimeFactory, aiohttp_server: Any
) -> ServerFactory:
    return duplex_servers(cascade_config_file, tmp_path, make_runtime, aiohttp_server)


class Talker(Socket):
    """A Realtime client on the duplex back-end: streams 80 ms appends, collects the deltas."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, http: aiohttp.ClientSession) -> None:
        super().__init__(ws)
        self.http = http
        self.sent = 0
        self.ga = False

    @classmethod
    async def dial(cls, server: TestServer) -> Talker:
        http = aiohttp.ClientSession()
        try:
            socket = await connect(server, http)
        except BaseException:
            await http.close()
            raise
        talker = cls(socket.ws, http)
        await talker.until("session.created")
        return talker

    @property
    def delta_type(self) -> str:
        return "response.output_audio.delta" if self.ga else "response.audio.delta"

    def audio(self) -> list[bytes]:
        return [base64.b64decode(e["delta"]) for e in self.seen if e["type"] == self.delta_type]

    def transcript(self) -> str:
        text_type = (
            "response.output_audio_transcript.delta"
            if self.ga
            else "response.audio_transcript.delta"
        )
        return "".join(e["delta"] for e in self.seen if e["type"] == text_type)

    async def switch(self, **session: Any) -> dict[str, Any]:
        """Ask for the duplex back-end; the ``session.updated`` that says who serves it."""
        self.ga = session.get("type") == "realtime"
        # GA has no top-level ``voice`` (it is ``audio.output.voice``): OpenAI refuses it there
        persona = {k: v for k, v in PERSONA.items() if not (self.ga and k == "voice")}
        await self.send("session.update", session={**persona, **session})
        updated = await self.until("session.updated")
        await self.until("response.created")
        view: dict[str, Any] = updated["session"]
        return view

    async def append(self, frames: int) -> None:
        rng = np.random.default_rng(self.sent)
        for _ in range(frames):
            pcm = (rng.standard_normal(FRAME) * 0.01 * 32767).astype(np.int16).tobytes()
            await self.send("input_audio_buffer.append", audio=base64.b64encode(pcm).decode())
            self.sent += 1

    async def talk(self, frames: int, *, lag: int = 2) -> None:
        """Append frames one by one, each once the deltas are at most ``lag`` frames behind."""
        for _ in range(frames):
            await self.append(1)
            while len(self.audio()) < self.sent - lag:
                await self.until(self.delta_type, timeout=30)

    async def hang_up(self) -> None:
        await self.ws.close()
        await self.http.close()


async def peer_state(runtime: Runtime) -> dict[str, Any]:
    url = runtime.fleet.engine("duplex").base_url  # type: ignore[attr-defined]
    async with aiohttp.ClientSession() as http, http.get(f"{url}/peer/state") as response:
        state: dict[str, Any] = await response.json()
        return state


async def closed(subscription: Any, session_id: str) -> None:
    """Wait until the duplex session ``session_id`` was closed on the server side."""
    async with asyncio.timeout(15):
        async for event in subscription:
            if event.type == "session.closed" and event.data["session"] == session_id:
                return


async def test_a_realtime_client_talks_to_personaplex_and_the_next_one_to_the_cascade(
    make_server: ServerFactory,
) -> None:
    server, runtime = await make_server()
    await runtime.fleet.load("duplex")
    first = await Talker.dial(server)
    second: Talker | None = None
    try:
        view = await first.switch()
        assert (view["backend"], view["served_by"], view["engine"]) == (
            "duplex",
            "duplex",
            "duplex",
        )
        assert view["voice"] == "NATF2.pt" and view["instructions"] == PERSONA["instructions"]
        await first.talk(10)
        # every frame PersonaPlex sent back arrives as one 80 ms delta, none merged or lost
        answered = (await peer_state(runtime))["frames_out"]
        assert answered >= first.sent - 2
        while len(first.audio()) < answered:
            await first.until("response.audio.delta", timeout=30)
        assert all(len(delta) == FRAME * 2 for delta in first.audio())
        assert all(np.frombuffer(delta, np.int16).any() for delta in first.audio())
        duplex_session = runtime.sessions[view["id"]]
        assert first.transcript(), "PersonaPlex's words arrive as transcript deltas"
        assert "".join(duplex_session.transcript).startswith(first.transcript())

        second = await Talker.dial(server)  # GA shape: the engine is taken, the cascade serves
        other = await second.switch(type="realtime", audio={"output": {"voice": "nope"}})
        assert (other["type"], other["backend"], other["served_by"]) == (
            "realtime",
            "duplex",
            "cascade",
        )
        assert "in conversation" in other["route_reason"] and other["voice"] == "NATF2.pt"
        await second.append(5)
        for kind in ("input_audio_buffer.commit", "response.create", "response.cancel"):
            await second.send(kind)
            assert (await second.until("error"))["error"]["code"] == "not_in_duplex"
        await second.send("session.update", session={"instructions": "Be someone else."})
        assert (await second.until("error"))["error"]["code"] == "session_fixed"
        # events are handled in order: the five appends were fed before those errors
        summaries = {s["id"]: s for s in runtime.session_summaries()}
        assert summaries[other["id"]]["frames_in"] == 5
        assert sorted(s["backend"] for s in summaries.values()) == ["cascade", "duplex"]
        assert "response.audio.delta" not in second.types()  # GA names only
    finally:
        await first.hang_up()
        if second is not None:
            await second.hang_up()


async def test_bad_switches_are_refused_and_the_connection_goes_on(
    make_server: ServerFactory,
) -> None:
    server, runtime = await make_server()  # the duplex engine is never needed here
    socket = await Talker.dial(server)
    try:
        await socket.send("session.update", session={**PERSONA, "instructions": "  "})
        error = (await socket.until("error"))["error"]
        assert (error["code"], error["param"]) == ("invalid_input", "session.instructions")
        assert "instructions" in error["message"]
        await socket.send("session.update", session={"backend": "telepathy"})
        assert "session.backend" in (await socket.until("error"))["error"]["message"]
        await socket.send("session.update", session={"instructions": "Be terse."})
        updated = (await socket.until("session.updated"))["session"]
        assert (updated["backend"], updated["instructions"]) == ("cascade", "Be terse.")
        await socket.append(1)
        await socket.send("session.update", session=PERSONA)
        error = (await socket.until("error"))["error"]
        assert error["code"] == "conversation_already_started"
        assert server.app[DUPLEX_ROUTER].holder is None
        (summary,) = runtime.session_summaries()
        assert summary["backend"] == "cascade" and "engines" in summary  # still the cascade
    finally:
        await socket.hang_up()


async def test_a_closed_socket_frees_personaplex_and_a_crash_is_seen_by_the_client(
    make_server: ServerFactory,
) -> None:
    server, runtime = await make_server()
    await runtime.fleet.load("duplex")
    events = runtime.bus.subscribe()
    first = await Talker.dial(server)
    view = await first.switch()
    assert view["served_by"] == "duplex"
    leases = {status.name: status.leases for status in await runtime.fleet.statuses()}
    assert leases.pop("duplex") == 1
    assert set(leases.values()) == {0}, "the cascade opened at connect was closed: no leases"
    await first.talk(3)
    await first.hang_up()
    await closed(events, view["id"])
    assert server.app[DUPLEX_ROUTER].holder is None and runtime.sessions == {}

    second = await Talker.dial(server)
    try:
        again = await second.switch()
        assert again["served_by"] == "duplex", "the slot came back with the socket's close"
        await second.talk(3)
        kill(runtime)
        changed = await second.until("session.backend_changed", timeout=60)
        assert (changed["source"], changed["target"]) == ("duplex", "cascade")
        assert changed["reason"] and changed["gap_s"] < 30
        after = (await second.until("session.updated"))["session"]
        assert (after["backend"], after["served_by"]) == ("duplex", "cascade")
        await second.append(3)  # the cascade takes the audio on the same socket
        await second.send("input_audio_buffer.clear")
        assert (await second.until("error"))["error"]["code"] == "not_in_duplex"
    finally:
        await second.hang_up()
    await closed(events, again["id"])
    events.close()
    assert runtime.sessions == {} and server.app[DUPLEX_ROUTER].holder is None
    assert all(status.leases == 0 for status in await runtime.fleet.statuses())


async def test_a_duplex_engine_that_cannot_start_leaves_the_session_on_the_cascade(
    make_server: ServerFactory,
) -> None:
    # the peer exits at once, as a server without its web UI files would
    server, runtime = await make_server(policy="duplex-only", extra_args='"--static", "dist"')
    socket = await Talker.dial(server)
    try:
        await socket.send("session.update", session=PERSONA)
        error = (await socket.until("error", timeout=60))["error"]
        assert error["param"] == "session.backend" and "stays on the cascade" in error["message"]
        assert server.app[DUPLEX_ROUTER].holder is None
        await socket.say("Hello")  # the cascade session was reopened and answers
        await socket.send("response.create")
        assert (await socket.until("response.done"))["response"]["status"] == "completed"
        (summary,) = runtime.session_summaries()
        assert summary["backend"] == "cascade"
    finally:
        await socket.hang_up()


async def test_without_failover_a_crash_ends_the_session_and_says_why(
    make_server: ServerFactory,
) -> None:
    server, runtime = await make_server(failover=False)
    await runtime.fleet.load("duplex")
    events = runtime.bus.subscribe()
    socket = await Talker.dial(server)
    try:
        view = await socket.switch()
        assert view["served_by"] == "duplex"
        await socket.talk(3)
        kill(runtime)
        done = (await socket.until("response.done", timeout=60))["response"]
        assert done["status"] == "failed"
        error = (await socket.until("error"))["error"]
        assert error["code"] == "session_failed" and "duplex" in error["message"]
        async with asyncio.timeout(15):
            closing = await socket.ws.receive()
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert socket.ws.close_code == 1011
        assert not any(e["type"] == "session.backend_changed" for e in socket.seen)
    finally:
        await socket.hang_up()
    await closed(events, view["id"])
    events.close()
    assert runtime.sessions == {} and server.app[DUPLEX_ROUTER].holder is None
    assert all(status.leases == 0 for status in await runtime.fleet.statuses())
