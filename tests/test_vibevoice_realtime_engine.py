"""The ``vibevoice-realtime`` adapter against tests/peers/vibevoice_realtime_peer.py, the peer of
Microsoft's real-time demo server: started by the supervisor with the real command line from a
checkout, audio handed on chunk by chunk as the server sends it, closing a stream stops the
generation, one stream at a time, its failures classified, and each missing piece reported."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import psutil
import pytest

from orchestrator.gpu.catalog import load_catalog
from orchestrator.gpu.placement import GIB
from services.base import EngineSpec, EngineState, Role, Runtime, SpeechSynthesizer
from services.errors import EngineCallError, EngineNotLoaded, InvalidInput, ModelMissing
from services.process.supervisor import ProcessState, Supervisor
from services.registry import ADAPTERS
from services.server_errors import ServerBusy, ServerUnavailable
from services.vibevoice_realtime import VibeVoiceRealtime
from tests.conftest import free_port
from tests.peers.vibevoice_realtime_peer import make_checkout
from tests.peers.watch import alive, start_peer, stop_peer

MODEL = "microsoft/VibeVoice-Realtime-0.5B"
TEXT = "Hello there, this is a sentence of some length."  # 48 characters: 6 chunks
CHUNK_BYTES = 3200 * 2


class Peer:
    """Talks to the peer's test routes (control, state, wait on a counter)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def control(self, **settings: Any) -> None:
        with httpx.Client(trust_env=False) as client:
            client.post(f"{self.url}/peer/control", json=settings).raise_for_status()

    def state(self) -> dict[str, Any]:
        with httpx.Client(trust_env=False) as client:
            body: dict[str, Any] = client.get(f"{self.url}/peer/state").json()
        return body

    async def until(self, name: str, value: int) -> None:
        async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
            response = await client.get(f"{self.url}/peer/wait", params={name: value})
            response.raise_for_status()


def engine_for(url: str, *, supervise: bool = False, **options: Any) -> VibeVoiceRealtime:
    settings = {"url": url, "supervise": supervise, "health_cache_s": 0, "timeout_s": 30, **options}
    spec = EngineSpec("tts", Role.TTS, MODEL, Path("/nonexistent"), "cpu", options=settings)
    engine = VibeVoiceRealtime(spec)
    if supervise:
        engine.use_supervisor(Supervisor(None))
    return engine


def supervised(tmp: Path, **options: Any) -> VibeVoiceRealtime:
    """The engine as a profile configures it, its checkout's demo script running the peer."""
    settings: dict[str, Any] = {
        "python": sys.executable,
        "source": str(make_checkout(tmp / "VibeVoice")),
        "offline": False,
        "stop_grace_s": 2.0,
        "ready_timeout_s": 60.0,
        "restart": {"enabled": False},
        **options,
    }
    return engine_for(f"http://127.0.0.1:{free_port()}", supervise=True, **settings)


@pytest.fixture(scope="module")
def peer_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One peer for the remote-engine tests (each test leaves it idle and unheld)."""
    folder = tmp_path_factory.mktemp("vibevoice-realtime")
    checkout = make_checkout(folder / "VibeVoice")
    port = free_port()
    voices = str(checkout / "demo" / "voices" / "streaming_model")
    args = ["--port", str(port), "--device", "cpu", "--voices-dir", voices]
    process = start_peer("tests.peers.vibevoice_realtime_peer", args, {}, port, folder / "log")
    yield f"http://127.0.0.1:{port}"
    stop_peer(process)


@pytest.fixture
def peer(peer_url: str) -> Iterator[Peer]:
    control = Peer(peer_url)
    yield control
    control.control(hold_before=None, fail_after=None)


@pytest.fixture
async def tts(peer_url: str) -> AsyncIterator[VibeVoiceRealtime]:
    engine = engine_for(peer_url)
    await engine.load()
    yield engine
    await engine.unload()


async def collect(engine: VibeVoiceRealtime, text: str, voice: str | None = None) -> list[bytes]:
    async with aclosing(engine.synthesize(text, voice=voice)) as chunks:
        return [chunk.pcm16 async for chunk in chunks]


def test_the_adapter_is_registered_for_tts_and_planned_from_the_catalog() -> None:
    assert ADAPTERS["vibevoice-realtime"][0] is Role.TTS
    match = load_catalog().lookup("vibevoice-realtime", MODEL, "default")
    assert match is not None and match.label == "vibevoice-0.5b:bf16"
    assert 2 <= match.vram_bytes / GIB <= 3  # the hosting notes: ~2-3 GB


async def test_the_server_runs_with_the_real_command_line_and_unload_stops_it(
    tmp_path: Path,
) -> None:
    engine = supervised(tmp_path)
    try:
        assert isinstance(engine, SpeechSynthesizer) and engine.runtime is Runtime.MANAGED
        await engine.load()
        process = engine.process
        assert process is not None and process.state is ProcessState.READY and process.pid
        cmdline = psutil.Process(process.pid).cmdline()
        assert cmdline[1] == str(tmp_path / "VibeVoice" / "demo" / "vibevoice_realtime_demo.py")
        port = str(httpx.URL(engine.base_url).port)
        assert cmdline[2:] == ["--model_path", MODEL, "--port", port, "--device", "cpu"]
        assert engine.voices == ("en-Carter_man", "en-Davis_man", "en-Emma_woman", "in-Samuel_man")
        assert engine.default_voice == "en-Carter_man"
        assert (await engine.health()).state is EngineState.LOADED
        assert engine.memory().measured_ram_bytes, "RSS of the server process"

        chunks = await collect(engine, TEXT)
        assert [len(c) for c in chunks] == [CHUNK_BYTES] * 6

        pid = process.pid
        await engine.unload()
        assert engine.state is EngineState.UNLOADED and not alive(pid)
        with pytest.raises(EngineNotLoaded):
            await collect(engine, TEXT)
    finally:
        await engine.stop_process()


async def test_audio_is_handed_on_as_the_server_sends_it(
    tts: VibeVoiceRealtime, peer: Peer
) -> None:
    """The server holds before its second chunk: the first is already ours."""
    peer.control(hold_before=1)
    async with aclosing(tts.synthesize(TEXT)) as chunks:
        first = await anext(chunks)
        assert len(first.pcm16) == CHUNK_BYTES and first.sample_rate == 24_000
        assert peer.state()["streams"][-1]["chunks"] == 1
        peer.control(hold_before=None)
        rest = [chunk async for chunk in chunks]
    assert len(rest) == 5
    assert peer.state()["streams"][-1]["outcome"] == "complete"


async def test_closing_the_stream_stops_the_generation(tts: VibeVoiceRealtime, peer: Peer) -> None:
    before = peer.state()["counters"]
    peer.control(hold_before=1)
    chunks = tts.synthesize("A long answer that the student interrupts. " * 10)
    await anext(chunks)
    await chunks.aclose()  # closes the socket while the server is making the next chunk
    peer.control(hold_before=None)
    await peer.until("disconnected", before["disconnected"] + 1)
    stream = peer.state()["streams"][-1]
    assert (stream["outcome"], stream["chunks"]) == ("client_disconnected", 1)


async def test_voices_by_name_short_name_and_openai_name(
    tts: VibeVoiceRealtime, peer: Peer
) -> None:
    await collect(tts, "Hello.", voice="emma")
    await collect(tts, "Hello.", voice="en-Davis_man")
    await collect(tts, "Hello.", voice="alloy")  # an OpenAI name: the configured voice
    assert [s["voice"] for s in peer.state()["streams"][-3:]] == [
        "en-Emma_woman",
        "en-Davis_man",
        "en-Carter_man",
    ]
    count = len(peer.state()["streams"])
    with pytest.raises(InvalidInput, match=r"no voice 'Zeus'.*en-Emma_woman"):
        await collect(tts, "Hello.", voice="Zeus")  # the server would speak it as Carter
    assert len(peer.state()["streams"]) == count, "refused before anything was sent"


async def test_a_configured_voice_the_server_lacks_fails_the_load(peer_url: str) -> None:
    engine = engine_for(peer_url, voice="Grace")
    with pytest.raises(ModelMissing, match="no voice 'Grace'"):
        await engine.load()
    configured = engine_for(peer_url, voice="Samuel")
    await configured.load()
    assert configured.voice_key(None) == configured.voice_key("shimmer") == "in-Samuel_man"
    await configured.unload()


async def test_another_clients_stream_makes_it_busy_then_it_is_served(
    tts: VibeVoiceRealtime, peer: Peer, peer_url: str
) -> None:
    """The server never queues: a stream while another runs is refused with close 1013. The
    engine retries for ``busy_wait_s``, then says so (transient: the chain may fall back)."""
    counters = peer.state()["counters"]
    peer.control(hold_before=0)
    async with aiohttp.ClientSession() as http:
        url = peer_url.replace("http", "ws") + "/stream?text=Someone+else+speaks."
        async with http.ws_connect(url) as other:
            await peer.until("held", counters["held"] + 1)
            impatient = engine_for(peer_url, busy_wait_s=0)
            await impatient.load()
            with pytest.raises(ServerBusy) as caught:
                await collect(impatient, "Me too.")
            assert caught.value.transient and caught.value.engine == "tts"

            waiting = asyncio.create_task(collect(tts, "Me too."))
            await peer.until("busy", counters["busy"] + 2)  # refused, and retrying
            peer.control(hold_before=None)
            assert len(await waiting) == 1  # served once the other stream ended
            assert [m.type async for m in other if m.type is aiohttp.WSMsgType.BINARY]


async def test_a_failed_generation_ends_the_stream_with_the_servers_message(
    tts: VibeVoiceRealtime, peer: Peer
) -> None:
    peer.control(fail_after=1)
    chunks = tts.synthesize(TEXT)
    await anext(chunks)
    with pytest.raises(EngineCallError, match="generation failed: CUDA out of memory"):
        await anext(chunks)
    assert len(await collect(tts, TEXT)) == 6, "only the one stream failed"


async def test_a_server_that_dies_mid_stream_is_unavailable(tmp_path: Path) -> None:
    engine = supervised(tmp_path)
    try:
        await engine.load()
        assert engine.process is not None and engine.process.pid is not None
        control = Peer(engine.base_url)
        control.control(hold_before=1)
        chunks = engine.synthesize(TEXT)
        await anext(chunks)
        os.kill(engine.process.pid, signal.SIGKILL)
        with pytest.raises(ServerUnavailable, match="broke off") as caught:
            await anext(chunks)
        assert caught.value.transient and caught.value.engine == "tts"
    finally:
        await engine.stop_process()


async def test_a_long_text_goes_as_several_streams(peer_url: str, peer: Peer) -> None:
    """The text rides in the URL: past ``max_url_bytes`` it is cut between sentences."""
    engine = engine_for(peer_url, max_url_bytes=600)
    await engine.load()
    sentence = "Fractions are parts of a whole, like slices of a pizza. "
    text = (sentence * 30).strip()
    count = len(peer.state()["streams"])
    chunks = await collect(engine, text)
    streams = peer.state()["streams"][count:]
    assert len(streams) > 1
    assert " ".join(s["text"] for s in streams) == text
    assert all(s["text"].endswith(".") for s in streams), "cut after sentences"
    assert len(chunks) == sum(s["chunks"] for s in streams)
    await engine.unload()


async def test_empty_text_is_refused(tts: VibeVoiceRealtime) -> None:
    with pytest.raises(InvalidInput):
        await collect(tts, "   ")
