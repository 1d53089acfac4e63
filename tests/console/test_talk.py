"""The Talk page's voice socket, ``/talk/realtime``: only a signed-in console user from the
console's own origin opens it (a cookie session with its CSRF token too), and it carries a real
``/v1/realtime`` session of the server's voice API, opened with the server's own key, both ways;
after a spoken turn it adds the session's server-side stage timings."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import numpy as np
import pytest

from console.context import CONSOLE
from console.talk import PATH, TIMINGS, realtime_url
from orchestrator.config import AppConfig, ServerConfig
from tests.conftest import CONSOLE_PASSWORD, RuntimeFactory
from tests.console.voice import RATE, SAID, Voice, serve_voice
from tests.helpers import basic
from tests.realtime_client import Socket
from tests.speech import silence, speak

ADMIN = basic("admin", CONSOLE_PASSWORD)


@pytest.fixture
async def voice(
    cascade_config: AppConfig, make_runtime: RuntimeFactory, aiohttp_server: Any
) -> Voice:
    return await serve_voice(cascade_config, make_runtime, aiohttp_server)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    jar = aiohttp.CookieJar(unsafe=True)  # keeps cookies of 127.0.0.1, as browsers do
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        yield session


def url(voice: Voice) -> str:
    return voice.base + PATH


async def refused(http: aiohttp.ClientSession, target: str, **options: Any) -> int:
    """The status the upgrade was answered with (it must not become a socket)."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await http.ws_connect(target, **options)
    return caught.value.status


async def signed_in(http: aiohttp.ClientSession, voice: Voice) -> str:
    """Sign in with the form, as a browser does; the session keeps the cookie. Returns the
    page's CSRF token."""
    response = await http.post(
        voice.base + "/login", data={"password": CONSOLE_PASSWORD, "next": "/talk"}
    )
    page = await response.text()
    assert response.url.path == "/talk", page
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
    assert match
    return match.group(1)


def test_the_voice_api_is_reached_on_loopback_for_a_wildcard_bind() -> None:
    assert realtime_url(ServerConfig(api_port=11400)) == "ws://127.0.0.1:11400/v1/realtime"
    ipv6 = ServerConfig(api_host="::", api_port=1)
    assert realtime_url(ipv6) == "ws://[::1]:1/v1/realtime"
    own = ServerConfig(api_host="10.0.0.5", api_port=2)
    assert realtime_url(own) == "ws://10.0.0.5:2/v1/realtime"
    assert (
        realtime_url(ServerConfig(api_host="fd00::5", api_port=3)) == "ws://[fd00::5]:3/v1/realtime"
    )


async def test_the_talk_page_is_in_the_console(voice: Voice, http: aiohttp.ClientSession) -> None:
    response = await http.get(voice.base + "/talk", headers=ADMIN)
    assert response.status == 200
    html = await response.text()
    assert '<a href="/talk" aria-current="page">Talk</a>' in html
    assert 'id="talk-hold"' in html and 'id="talk-handsfree"' in html
    assert f'data-socket="{PATH}"' in html and "talk.js?v=" in html
    assert "No open voice sessions" in html  # opening the page opens no session
    worklet = re.search(r'data-worklet="([^"]+)"', html)
    assert worklet and "talk-worklet.js" in worklet.group(1)
    script = await http.get(voice.base + worklet.group(1).replace("&amp;", "&"), headers=ADMIN)
    assert script.status == 200 and "registerProcessor" in await script.text()
    assert voice.runtime.sessions == {}


async def test_the_socket_needs_a_sign_in(voice: Voice, http: aiohttp.ClientSession) -> None:
    assert await refused(http, url(voice)) == 401  # not a redirect to the sign-in page
    wrong = basic("admin", "not the password")
    assert await refused(http, url(voice), headers=wrong) == 401
    assert voice.ended.empty() and voice.runtime.sessions == {}


async def test_an_origin_from_elsewhere_is_refused(
    voice: Voice, http: aiohttp.ClientSession
) -> None:
    for origin in ("http://evil.example", f"http://127.0.0.1:{voice.api.port}"):
        status = await refused(http, url(voice), headers={**ADMIN, "Origin": origin})
        assert status == 403, origin
    token = await signed_in(http, voice)
    own = {"Origin": voice.base}
    assert await refused(http, url(voice), headers=own, protocols=("realtime",)) == 403
    wrong = ("realtime", "vo-csrf.not-the-token")
    assert await refused(http, url(voice), headers=own, protocols=wrong) == 403
    evil = {"Origin": "http://evil.example"}
    right = ("realtime", f"vo-csrf.{token}")
    assert await refused(http, url(voice), headers=evil, protocols=right) == 403
    assert voice.runtime.sessions == {}

    ws = await http.ws_connect(url(voice), headers=own, protocols=right)
    assert ws.protocol == "realtime"
    socket = Socket(ws)
    created = await socket.until("session.created")
    assert created["session"]["id"] in voice.runtime.sessions
    await ws.close()
    await voice.ended.get()


async def test_a_session_round_trip_through_the_relay(
    voice: Voice, http: aiohttp.ClientSession
) -> None:
    ws = await http.ws_connect(url(voice), headers=ADMIN)  # the CLI's Basic: no Origin, no token
    socket = Socket(ws)
    created = await socket.until("session.created")
    session_id = created["session"]["id"]
    assert voice.runtime.sessions[session_id].summary()["backend"] == "cascade"
    await socket.send("session.update", session={"turn_detection": None})
    assert (await socket.until("session.updated"))["session"]["turn_detection"] is None
    await socket.say("Hello")
    await socket.send("response.create")
    done = await socket.until("response.done")
    assert done["response"]["status"] == "completed"
    said = next(e for e in socket.seen if e["type"] == "response.audio_transcript.done")
    assert said["transcript"].split() == SAID.split()
    deltas = [e for e in socket.seen if e["type"] == "response.audio.delta"]
    assert deltas and all(e["response_id"] == done["response"]["id"] for e in deltas)
    assert TIMINGS not in socket.types()  # a typed turn: no end of speech to time from

    await socket.send("input_audio_buffer.commit")  # the API's own errors come through too
    assert (await socket.until("error"))["error"]["code"] == "input_audio_buffer_commit_empty"

    entries = voice.console.app[CONSOLE].audit.recent(10)  # the operator opened it: audited
    assert any(e.action == "talk" and e.ok for e in entries)

    await ws.close()
    await voice.ended.get()  # the API's session ended with the browser's socket
    assert voice.runtime.sessions == {}


async def test_a_spoken_turn_brings_the_server_s_stage_timings(
    voice: Voice, http: aiohttp.ClientSession
) -> None:
    question = speak("Hello teacher, what is two plus two?", RATE)
    samples = np.concatenate([question, silence(1.0, RATE)])
    ws = await http.ws_connect(url(voice), headers=ADMIN)
    socket = Socket(ws)
    await socket.until("session.created")
    step = RATE // 2
    for start in range(0, len(samples), step):
        chunk = (samples[start : start + step] * 32767).astype(np.int16).tobytes()
        await socket.send("input_audio_buffer.append", audio=base64.b64encode(chunk).decode())
    await socket.until("input_audio_buffer.speech_stopped")
    done = await socket.until("response.done")
    timings = await socket.until(TIMINGS)
    assert timings["response_id"] == done["response"]["id"] and timings["turn"] == 1
    for stage in ("transcript_s", "first_token_s", "tts_first_byte_s", "first_audio_s"):
        assert timings[stage] >= 0, stage
    assert timings["first_audio_s"] >= timings["first_token_s"]
    await ws.close()
    await voice.ended.get()


async def test_a_voice_api_that_is_down_is_named_to_the_page(
    voice: Voice, http: aiohttp.ClientSession
) -> None:
    await voice.api.close()
    ws = await http.ws_connect(url(voice), headers=ADMIN)
    error = (await Socket(ws).until("error"))["error"]
    assert error["code"] == "voice_api_unreachable"
    assert realtime_url(voice.runtime.config.server) in error["message"]
    assert (await ws.receive()).type is aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 1013  # try again later
    entries = voice.console.app[CONSOLE].audit.recent(10)
    assert any(e.action == "talk" and not e.ok and "cannot be reached" in e.error for e in entries)


async def test_when_the_voice_api_closes_the_page_is_told(
    voice: Voice, http: aiohttp.ClientSession
) -> None:
    ws = await http.ws_connect(url(voice), headers=ADMIN)
    socket = Socket(ws)
    await socket.until("session.created")
    await voice.api.close()  # the API shuts down: its sockets close with 1001
    message = await ws.receive()
    assert message.type is aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 1001
