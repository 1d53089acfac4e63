"""The ``vibevoice`` adapter against tests/peers/vibevoice_peer.py, the community OpenAI-style
wrapper: voices checked against the server's list (it would speak any unknown one as Carter),
health that copes with a server silent while it synthesises, and supervision of its process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.base import EngineSpec, EngineState, Role, Runtime
from services.errors import InvalidInput, ModelMissing
from services.openai_tts import VibeVoiceSpeech, voice_names
from services.process.supervisor import ProcessState, Supervisor
from services.server_errors import ServerRejected
from tests.conftest import free_port
from tests.peers.watch import StateLog, alive, next_engine_state, start_peer, stop_peer

ROOT = Path(__file__).resolve().parent.parent


def build(url: str, **options: Any) -> VibeVoiceSpeech:
    spec = EngineSpec(
        name="tts",
        role=Role.TTS,
        model="vibevoice-realtime-0.5b",
        models_dir=Path("/nonexistent"),
        options={"url": url, "supervise": False, "health_cache_s": 0, **options},
    )
    return VibeVoiceSpeech(spec)


class Wrapper:
    def __init__(self, port: int, hold: Path, log: Path) -> None:
        self.root = f"http://127.0.0.1:{port}"
        self.url = f"{self.root}/v1"
        self.hold = hold
        self.log = log

    def spoken(self) -> list[dict[str, str]]:
        with httpx.Client(trust_env=False) as client:
            spoken: list[dict[str, str]] = client.get(f"{self.root}/peer/state").json()["spoken"]
        return spoken

    async def until_speaking(self, count: int, timeout_s: float = 30.0) -> None:
        """Until the wrapper printed that it began its ``count``-th synthesis (its loop is
        blocked from then on, so its log is the only sign)."""
        async with asyncio.timeout(timeout_s):
            while self.log.read_text().count("[tts] Generating speech") < count:
                await asyncio.sleep(0.02)


@pytest.fixture(scope="module")
def wrapper(tiny_piper_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wrapper]:
    folder = tmp_path_factory.mktemp("vibevoice")
    port = free_port()
    hold, log = folder / "hold", folder / "peer.log"
    args = ["--host", "127.0.0.1", "--port", str(port), "--model-path", str(tiny_piper_onnx)]
    args += ["--hold-file", str(hold)]
    process = start_peer("tests.peers.vibevoice_peer", args, {}, port, log)
    yield Wrapper(port, hold, log)
    stop_peer(process)


@pytest.fixture
async def tts(wrapper: Wrapper) -> AsyncIterator[VibeVoiceSpeech]:
    engine = build(wrapper.url, timeout_s=20)
    yield engine
    await engine.unload()


async def test_an_unknown_voice_is_refused_not_spoken_as_carter(
    tts: VibeVoiceSpeech, wrapper: Wrapper
) -> None:
    await tts.load()
    before = len(wrapper.spoken())
    with pytest.raises(InvalidInput, match=r"no voice 'Nobody'; it offers alloy, .*Samuel"):
        [c async for c in tts.synthesize("Hello.", voice="Nobody")]
    assert tts.voices is not None and {"Emma", "Carter", "alloy"} <= set(tts.voices)
    with pytest.raises(InvalidInput, match=r"no voice 'emma' \(did you mean 'Emma'\?\)"):
        [c async for c in tts.synthesize("Hello.", voice="emma")]
    assert len(wrapper.spoken()) == before  # refused here: nothing reached the server
    assert [c async for c in tts.synthesize("Hello.", voice="alloy")]  # its own alias
    assert [c async for c in tts.synthesize("Hello.")]  # the configured Emma
    assert wrapper.spoken()[before:] == [
        {"asked": "alloy", "used": "Carter"},
        {"asked": "Emma", "used": "Emma"},
    ]


async def test_the_wrapper_itself_speaks_unknown_voices_as_carter(wrapper: Wrapper) -> None:
    """The peer's faithfulness: why the adapter must check the voice itself."""
    body = {"input": "Hello.", "voice": "Nobody", "response_format": "pcm"}
    async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
        answer = await client.post(f"{wrapper.url}/audio/speech", json=body)
    assert answer.status_code == 200 and answer.headers["content-type"] == "audio/pcm"
    assert len(answer.content) > 0 and len(answer.content) % 2 == 0
    assert wrapper.spoken()[-1] == {"asked": "Nobody", "used": "Carter"}


async def test_a_configured_voice_it_lacks_fails_the_load(wrapper: Wrapper) -> None:
    engine = build(wrapper.url, voice="Zed")
    with pytest.raises(ModelMissing, match="no voice 'Zed'") as missing:
        await engine.load()
    assert missing.value.hint == "set options.voice to one of them"
    assert engine.state is EngineState.MISSING


async def test_health_is_busy_not_dead_while_it_synthesises(
    tts: VibeVoiceSpeech, wrapper: Wrapper
) -> None:
    await tts.load()
    started = wrapper.log.read_text().count("[tts] Generating speech")
    wrapper.hold.touch()
    try:
        speaking = asyncio.create_task(collect(tts.synthesize("A long answer.")))
        await wrapper.until_speaking(started + 1)
        async with httpx.AsyncClient(trust_env=False, timeout=0.5) as client:
            with pytest.raises(httpx.ReadTimeout):  # its loop is busy: /health is silent
                await client.get(f"{wrapper.root}/health")
        health = await tts.health()
        assert health.state is EngineState.LOADED, health
        assert "busy" in health.detail
    finally:
        wrapper.hold.unlink(missing_ok=True)
    assert await speaking  # the whole utterance came, late and in one piece
    health = await tts.health()
    assert (health.state, health.detail) == (EngineState.LOADED, "")


async def collect(stream: Any) -> list[Any]:
    return [chunk async for chunk in stream]


async def test_a_probe_that_times_out_as_our_call_begins_is_busy() -> None:
    """The race the in-flight count cannot see: the probe was sent just before our request."""
    engine = build("http://vibevoice.invalid/v1", voices_path=None)

    def handler(request: httpx.Request) -> httpx.Response:
        engine._calls += 1  # our synthesis started while the probe waited
        raise httpx.ReadTimeout("no answer", request=request)

    engine._client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    health = await engine.health()
    assert "busy" in health.detail
    quiet = build("http://vibevoice.invalid/v1", voices_path=None)
    quiet._client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    health = await quiet.health()  # nothing of ours in flight: silent is down
    assert health.state is EngineState.FAILED and "timed out" in health.detail


async def test_its_errors_read_as_fastapi_writes_them(wrapper: Wrapper) -> None:
    engine = build(wrapper.url, max_text_chars=10_000)
    await engine.load()
    with pytest.raises(ServerRejected, match="HTTP 422: input: String should have at most 4096"):
        [c async for c in engine.synthesize("x" * 5000)]
    await engine.unload()


def test_voice_lists_in_the_shapes_servers_send() -> None:
    assert voice_names({"voices": [{"voice_id": "alloy", "name": "alloy"}, "Emma"]}) == (
        "alloy",
        "Emma",
    )
    assert voice_names(["af_bella", "af_bella", "am_adam"]) == ("af_bella", "am_adam")
    with pytest.raises(ValueError):
        voice_names({"data": []})


async def test_supervised_ready_on_model_loaded_and_unloads_by_stopping(
    tiny_piper_onnx: Path, tmp_path: Path
) -> None:
    port = free_port()
    command = [sys.executable, "-m", "tests.peers.vibevoice_peer", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--model-path", str(tiny_piper_onnx), "--load-delay", "0.5"]
    supervisor = Supervisor(tmp_path / "pids")
    tts = build(
        f"http://127.0.0.1:{port}/v1",
        supervise=True,
        command=command,
        cwd=str(ROOT),
        restart={"initial_delay_s": 0.05},
    )
    tts.use_supervisor(supervisor)
    assert tts.runtime is Runtime.MANAGED
    try:
        report = await tts.load()
        assert report.seconds >= 0.5  # ready only once it listened, its model loaded
        assert report.ram_delta_bytes > 0  # the server process's RSS
        assert tts.memory().measured_ram_bytes
        assert [c async for c in tts.synthesize("Hello.")]
        process = tts.process
        assert process is not None
        first = process.pid
        assert first is not None
        states = StateLog(process)
        reattached = next_engine_state(tts)
        os.kill(first, signal.SIGKILL)
        await states.reach(ProcessState.CRASHED)
        health = await tts.health()
        assert health.state is EngineState.LOADING and "SIGKILL" in health.detail
        await states.reach(ProcessState.READY)
        assert await asyncio.wait_for(reattached, 60) is EngineState.LOADED
        second = process.pid
        assert second is not None and second != first
        await tts.unload()
        assert process.state is ProcessState.STOPPED and not alive(second)
        health = await tts.health()
        assert health.state is EngineState.UNLOADED and "starts on load" in health.detail
        again = await tts.load()
        assert again.seconds >= 0.5 and tts.state is EngineState.LOADED
    finally:
        await supervisor.stop_all()
