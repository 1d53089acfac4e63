"""VibeVoice as a session's voice with Piper as its fallback, as the GPU profiles configure them.

A real ``CascadeSession`` speaks with the ``vibevoice-realtime`` adapter, whose supervised
server is tests/peers/vibevoice_realtime_peer.py (started from a checkout with the real command
line), and the tiny Piper voice behind it (``sessions.fallbacks``). The LLM, ASR and VAD are the
fakes of tests/test_reply_fallback.py. Nothing sleeps: the test waits on the peer's counters
and the session's events.

- A reply streams from VibeVoice; so does REST speech, and ``"model": "piper"`` reaches Piper.
- The README's fallback rule: VibeVoice killed mid-reply before its first audio frame reached
  the client: the turn completes on Piper, each sentence shown once; the supervisor brings the
  server back and the chain's probe takes VibeVoice back for the next turn.
- VibeVoice not installed: ``/health`` says so and how to install it, the route is still ready
  on Piper, and the session speaks with Piper.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from orchestrator.api.app import create_api_app
from orchestrator.app.runtime import Runtime
from orchestrator.config import load_config
from orchestrator.core.idle import IdleState
from orchestrator.gpu.catalog import estimate, load_catalog
from orchestrator.gpu.placement import RunsOn
from orchestrator.voice.boundary import SessionEvent
from orchestrator.voice.session import CascadeSession
from services.base import EngineState, Role
from services.vibevoice_realtime import VibeVoiceRealtime
from tests.conftest import API_KEY, RuntimeFactory, free_port
from tests.peers.vibevoice_realtime_peer import make_checkout
from tests.peers.watch import next_engine_state
from tests.test_reply_fallback import SAID, Client, FakeAsr, FakeChat, FakeVad, done, kinds
from tests.test_vibevoice_realtime_engine import CHUNK_BYTES, TEXT, Peer

Http = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


def config_file(tmp: Path, piper: Path, tts_options: str) -> Path:
    path = tmp / "vibevoice.toml"
    path.write_text(
        f"""
profile = "cpu"
[state]
dir = "{tmp / "state"}"
[models]
dir = "{tmp / "models"}"
auto_download = false
[engines.tts]
role = "tts"
adapter = "vibevoice-realtime"
model = "microsoft/VibeVoice-Realtime-0.5B"
device = "cpu"
options = {{ {tts_options} }}
[engines.piper]
role = "tts"
adapter = "piper"
model = "{piper}"
priority = 50
[sessions]
partial_transcript_s = 0
fallbacks = {{ tts = ["piper"] }}
[routing]
default = ["asr", "piper"]
"""
    )
    return path


def installed(tmp: Path) -> str:
    """Options of a VibeVoice whose checkout runs the peer (restarted quickly after a crash)."""
    checkout = make_checkout(tmp / "VibeVoice")
    return (
        f'url = "http://127.0.0.1:{free_port()}", python = "{sys.executable}", '
        f'source = "{checkout}", offline = false, stop_grace_s = 2.0, '
        "restart = { initial_delay_s = 0.1 }"
    )


def audio_per_sentence(events: list[SessionEvent]) -> list[int]:
    """How many audio chunks followed each sentence's text."""
    counts: list[int] = []
    for event in events:
        if event.kind == "reply_text":
            counts.append(0)
        elif event.kind == "reply_audio" and counts:
            counts[-1] += 1
    return counts


async def open_session(
    make_runtime: RuntimeFactory, config: Path
) -> tuple[Runtime, CascadeSession, Client]:
    fakes = {"vad": FakeVad("vad", Role.VAD), "asr": FakeAsr("asr"), "llm": FakeChat("llm")}
    runtime = make_runtime(load_config(config_file=config, environ={}), writer=True, engines=fakes)
    client = Client()
    session = CascadeSession(runtime.session_deps(), client.emit)
    await session.open()
    return runtime, session, client


async def test_a_reply_streams_from_vibevoice(
    tmp_path: Path, tiny_piper_onnx: Path, make_runtime: RuntimeFactory
) -> None:
    config = config_file(tmp_path, tiny_piper_onnx, installed(tmp_path))
    runtime, session, client = await open_session(make_runtime, config)
    assert session.chains["tts"].current == "tts"
    events = await client.reply(session)
    assert done(events).status == "completed" and "fallback" not in kinds(events)
    audio = [e.audio for e in events if e.kind == "reply_audio"]
    assert audio and all(len(pcm) == CHUNK_BYTES for pcm in audio)  # 24 kHz: as sent
    engine = runtime.fleet.engine("tts")
    assert isinstance(engine, VibeVoiceRealtime)
    streams = Peer(engine.base_url).state()["streams"]
    assert [s["text"] for s in streams] == ["Hello there.", "How are you today?"]
    assert len(audio) == sum(s["chunks"] for s in streams)
    await session.close()


async def test_vibevoice_killed_before_its_first_frame_the_turn_completes_on_piper(
    tmp_path: Path, tiny_piper_onnx: Path, make_runtime: RuntimeFactory
) -> None:
    config = config_file(tmp_path, tiny_piper_onnx, installed(tmp_path))
    runtime, session, client = await open_session(make_runtime, config)
    engine = runtime.fleet.engine("tts")
    assert isinstance(engine, VibeVoiceRealtime) and engine.process is not None
    peer = Peer(engine.base_url)
    peer.control(hold_before=0)  # the server stops before its first chunk
    back = next_engine_state(engine)

    start = len(client.events)
    session.add_user_text("Hi")
    await session.start_reply()
    await peer.until("held", 1)
    pid = engine.process.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # VibeVoice dies mid-reply, nothing of it heard yet
    await client.until("reply_done", start)
    events = client.events[start:]

    assert done(events).status == "completed" and "error" not in kinds(events)
    (switch,) = [e for e in events if e.kind == "fallback"]
    assert switch.engines == ("tts", "tts", "piper")
    assert kinds(events).index("fallback") < kinds(events).index("reply_audio")
    assert [e.text.strip() for e in events if e.kind == "reply_text"] == [
        "Hello there.",
        "How are you today?",
    ]
    assert all(audio_per_sentence(events)), "every sentence was heard, none lost in the switch"
    assert done(events).text == SAID  # the turn is whole in the history
    assert session.chains["tts"].current == "piper"

    async with asyncio.timeout(60):
        assert await back is EngineState.LOADED  # the supervisor restarted it: the model is back
    await session.chains["tts"].probe()
    assert session.chains["tts"].current == "tts"
    events = await client.reply(session)
    assert done(events).status == "completed"
    assert [s["text"] for s in peer.state()["streams"]] == ["Hello there.", "How are you today?"]
    await session.close()


async def test_vibevoice_not_installed_health_says_so_and_piper_speaks(
    tmp_path: Path, tiny_piper_onnx: Path, make_runtime: RuntimeFactory, aiohttp_client: Http
) -> None:
    absent = f'home = "{tmp_path / "nothing-here"}", offline = false'
    runtime, session, client = await open_session(
        make_runtime, config_file(tmp_path, tiny_piper_onnx, absent)
    )
    assert session.chains["tts"].current == "piper"
    assert "tts" in session.chains["tts"].permanent  # not probed again: it will not come back
    events = await client.reply(session)
    assert done(events).status == "completed"
    assert len([e for e in events if e.kind == "reply_audio"]) > 0

    api = await aiohttp_client(create_api_app(runtime))
    auth = {"Authorization": f"Bearer {API_KEY}"}
    body = await (await api.get("/health", headers=auth)).json()
    tts = body["engines"]["tts"]
    assert tts["state"] == "missing"
    assert "VibeVoice environment is missing" in tts["last_error"]
    assert "./start.sh install vibevoice" in tts["hint"]
    assert body["status"] == "degraded" and any(p.startswith("tts:") for p in body["problems"])
    ready = await api.get("/health/ready", headers=auth)
    assert ready.status == 200, await ready.text()  # the route is served by Piper
    await session.close()


@pytest.mark.parametrize("profile", ["t4-16gb", "l4-24gb", "a100-40gb", "a100-80gb"])
def test_the_gpu_profiles_speak_with_vibevoice_and_fall_back_to_piper(profile: str) -> None:
    config = load_config(profile=profile, environ={})
    tts, piper = config.engines[config.sessions.tts], config.engines["piper"]
    assert (tts.adapter, tts.device) == ("vibevoice-realtime", "cuda")
    assert (piper.adapter, piper.device) == ("piper", "cpu")
    assert config.sessions.fallbacks["tts"] == ("piper",)
    assert set(config.routing.default) == {"asr", "piper"}  # ready while VibeVoice is down
    found = estimate(tts, load_catalog())
    assert found.source == "catalog" and found.runs_on is RunsOn.GPU
    cool = config.hibernation.actions[IdleState.COOL]
    # COOL parks the voices; neither VibeVoice nor Piper can park, so both are unloaded
    assert Role.TTS in cool.park_roles or Role.TTS in cool.unload_roles


async def test_rest_speech_streams_from_vibevoice_and_piper_by_name(
    tmp_path: Path, tiny_piper_onnx: Path, make_runtime: RuntimeFactory, aiohttp_client: Http
) -> None:
    config = load_config(
        config_file=config_file(tmp_path, tiny_piper_onnx, installed(tmp_path)), environ={}
    )
    runtime = make_runtime(config, engines={"vad": FakeVad("vad", Role.VAD)})
    api = await aiohttp_client(create_api_app(runtime))
    auth = {"Authorization": f"Bearer {API_KEY}"}
    body = {"model": "tts-1", "input": TEXT, "response_format": "pcm"}
    response = await api.post("/v1/audio/speech", json=body, headers=auth)
    assert response.status == 200, await response.text()
    pcm = await response.read()
    engine = runtime.fleet.engine("tts")
    assert isinstance(engine, VibeVoiceRealtime)
    (stream,) = Peer(engine.base_url).state()["streams"]
    assert stream["text"] == TEXT and len(pcm) == stream["chunks"] * CHUNK_BYTES

    response = await api.post("/v1/audio/speech", json={**body, "model": "piper"}, headers=auth)
    assert response.status == 200 and len(await response.read()) > 0
    assert len(Peer(engine.base_url).state()["streams"]) == 1, "Piper spoke that one"


async def test_rest_speech_falls_back_to_piper_when_vibevoice_cannot_load(
    tmp_path: Path, tiny_piper_onnx: Path, make_runtime: RuntimeFactory, aiohttp_client: Http
) -> None:
    """REST speech for the default voice uses the sessions' chain: VibeVoice missing, Piper
    speaks and the response says so; a request naming VibeVoice gets VibeVoice's error."""
    absent = f'home = "{tmp_path / "nothing-here"}", offline = false'
    config = load_config(config_file=config_file(tmp_path, tiny_piper_onnx, absent), environ={})
    runtime = make_runtime(config, engines={"vad": FakeVad("vad", Role.VAD)})
    api = await aiohttp_client(create_api_app(runtime))
    auth = {"Authorization": f"Bearer {API_KEY}"}
    body = {"model": "tts-1", "input": TEXT, "response_format": "pcm"}
    response = await api.post("/v1/audio/speech", json=body, headers=auth)
    assert response.status == 200, await response.text()
    assert response.headers["X-Voice-Fallback"] == "tts->piper"
    assert len(await response.read()) > 0

    named = await api.post("/v1/audio/speech", json={**body, "model": "tts"}, headers=auth)
    assert named.status >= 500 and "X-Voice-Fallback" not in named.headers
    assert "VibeVoice environment is missing" in (await named.json())["error"]["message"]
