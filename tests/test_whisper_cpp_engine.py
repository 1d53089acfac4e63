"""The ``whisper-cpp`` adapter against tests/peers/whisper_cpp_peer.py: whisper.cpp's paths, its
health (the loading 503 that reaches the wire as a 404), "auto" sent for an unset language."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from services.base import EngineSpec, EngineState, Role, Runtime
from services.errors import EngineCallError
from services.openai_asr import OpenAITranscriber, WhisperCppTranscriber
from services.process.supervisor import Supervisor
from services.registry import create_engine
from services.server_errors import ServerRejected
from tests.conftest import free_port
from tests.fixtures.tiny_ggml_whisper import build_tiny_ggml_whisper
from tests.peers.watch import start_peer, stop_peer

AUDIO = np.random.default_rng(0).uniform(-0.3, 0.3, 32_000).astype(np.float32)
# A whisper-server binary (built from whisper.cpp: neither PyPI nor Debian bookworm ships one).
REAL_SERVER = os.environ.get("VO_TEST_WHISPER_SERVER")


def spec(url: str, **options: Any) -> EngineSpec:
    return EngineSpec(
        name="asr",
        role=Role.ASR,
        model="ggml-tiny.bin",
        models_dir=Path("/nonexistent"),
        options={"url": url, "health_cache_s": 0, **options},
    )


class Peer:
    """A running whisper.cpp peer: its root URL and what it saw."""

    def __init__(self, root: str, gate: Path) -> None:
        self.root = root
        self.gate = gate

    def state(self) -> dict[str, Any]:
        with httpx.Client(trust_env=False) as client:
            answer: dict[str, Any] = client.get(f"{self.root}/peer/state").json()
        return answer

    def last_fields(self) -> dict[str, str]:
        fields: dict[str, str] = self.state()["requests"][-1]["fields"]
        return fields


def run_peer(model: Path, tmp: Path, *extra: str) -> tuple[Any, Peer]:
    port = free_port()
    gate = tmp / "load-gate"
    args = ["--model", str(model), "--port", str(port), "--load-gate", str(gate), *extra]
    process = start_peer("tests.peers.whisper_cpp_peer", args, {}, port, tmp / "peer.log")
    return process, Peer(f"http://127.0.0.1:{port}", gate)


@pytest.fixture(scope="module")
def peer(tiny_whisper_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    process, running = run_peer(tiny_whisper_dir, tmp_path_factory.mktemp("whisper-cpp"))
    yield running
    stop_peer(process)


@pytest.fixture
async def asr(peer: Peer) -> AsyncIterator[WhisperCppTranscriber]:
    engine = create_engine("whisper-cpp", spec(peer.root))
    assert isinstance(engine, WhisperCppTranscriber)
    yield engine
    await engine.unload()


async def test_ready_on_its_own_health_and_transcribes_on_inference(
    asr: WhisperCppTranscriber, peer: Peer
) -> None:
    assert asr.runtime is Runtime.REMOTE
    await asr.load()
    assert asr.state is EngineState.LOADED
    assert (await asr.health()).state is EngineState.LOADED
    segments = [s async for s in asr.transcribe(AUDIO)]
    assert segments and all(0 <= s.start <= s.end <= 2.0 + 1e-6 for s in segments)
    request = peer.state()["requests"][-1]
    assert request["path"] == "/inference"
    assert request["fields"]["response_format"] == "verbose_json"
    assert request["fields"]["no_language_probabilities"] == "true"  # no second encoder pass


async def test_an_unset_language_is_sent_as_auto_not_left_to_its_en(
    asr: WhisperCppTranscriber, peer: Peer
) -> None:
    await asr.load()
    [_ async for _ in asr.transcribe(AUDIO)]
    assert peer.last_fields()["language"] == "auto"
    [_ async for _ in asr.transcribe(AUDIO, language="de")]
    assert peer.last_fields()["language"] == "de"
    configured = WhisperCppTranscriber(spec(peer.root, language="fr"))
    await configured.load()
    [_ async for _ in configured.transcribe(AUDIO)]
    assert peer.last_fields()["language"] == "fr"
    await configured.unload()


async def test_translation_is_its_translate_field_with_a_source_language(
    asr: WhisperCppTranscriber, peer: Peer
) -> None:
    await asr.load()
    segments = [s async for s in asr.transcribe(AUDIO, task="translate")]
    assert segments and segments[0].language  # the code the server names
    fields = peer.last_fields()
    assert (fields["translate"], fields["language"]) == ("true", "auto")
    assert peer.state()["requests"][-1]["path"] == "/inference"


async def test_json_and_text_answers_are_one_segment(peer: Peer) -> None:
    for fmt in ("json", "text"):
        engine = WhisperCppTranscriber(spec(peer.root, response_format=fmt))
        await engine.load()
        [whole] = [s async for s in engine.transcribe(AUDIO)]
        assert (whole.start, whole.end) == (0.0, 2.0) and whole.text == whole.text.strip()
        assert "no_language_probabilities" not in peer.last_fields()
        await engine.unload()


async def test_the_openai_adapter_never_gets_ready_on_it(peer: Peer) -> None:
    """Today's ``openai-asr`` defaults: GET /v1/models, which whisper.cpp does not have."""
    openai = OpenAITranscriber(spec(f"{peer.root}/v1"))
    with pytest.raises(ServerRejected, match=r"HTTP 404: File Not Found \(/v1/models\)"):
        await openai.load()
    assert openai.state is EngineState.FAILED


async def test_wrong_paths_fail_clearly_and_for_good(peer: Peer) -> None:
    wrong = WhisperCppTranscriber(spec(peer.root, inference_path="/v1/audio/transcriptions"))
    await wrong.load()
    with pytest.raises(ServerRejected, match=r"transcribe: HTTP 404: File Not Found") as failure:
        [_ async for _ in wrong.transcribe(AUDIO)]
    assert not failure.value.transient
    elsewhere = WhisperCppTranscriber(spec(f"{peer.root}/stt"))  # not its --request-path
    with pytest.raises(ServerRejected, match=r"File Not Found \(/stt/health\)"):
        await elsewhere.load()


def test_there_is_no_model_list_to_check() -> None:
    with pytest.raises(ValueError, match=r"engines\.asr\.options\.check_model: .*no /v1/models"):
        WhisperCppTranscriber(spec("http://127.0.0.1:1", check_model=True))
    with pytest.raises(ValueError, match=r"engines\.asr\.options\.inference_path"):
        WhisperCppTranscriber(spec("http://127.0.0.1:1", inference_path="inference"))


def test_supervised_it_runs_whisper_server_where_the_url_says() -> None:
    engine = WhisperCppTranscriber(spec("http://127.0.0.1:11401/stt", supervise=True))
    assert engine.runtime is Runtime.MANAGED
    process = engine.process_spec()
    assert process.command == (
        "whisper-server",
        "--model",
        "ggml-tiny.bin",
        "--host",
        "127.0.0.1",
        "--port",
        "11401",
        "--request-path",
        "/stt",
    )
    assert process.probe is not None and getattr(process.probe, "path", None) == "/stt/health"


async def test_custom_request_and_inference_paths(tiny_whisper_dir: Path, tmp_path: Path) -> None:
    extra = ("--request-path", "/whisper", "--inference-path", "/v1/audio/transcriptions")
    process, running = run_peer(tiny_whisper_dir, tmp_path, *extra)
    try:
        options = {"inference_path": "/v1/audio/transcriptions"}
        engine = WhisperCppTranscriber(spec(f"{running.root}/whisper", **options))
        await engine.load()
        assert [s async for s in engine.transcribe(AUDIO)]
        assert running.state()["requests"][-1]["path"] == "/whisper/v1/audio/transcriptions"
        await engine.unload()
    finally:
        stop_peer(process)


async def wait_for(predicate: Any, timeout_s: float = 30.0) -> None:
    """Poll the peer (a separate process: no event to wait on) until ``predicate()`` holds."""
    async with asyncio.timeout(timeout_s):
        while not await asyncio.to_thread(predicate):
            await asyncio.sleep(0.02)


async def test_while_it_loads_a_model_it_is_loading_and_load_waits(
    tiny_whisper_dir: Path, tmp_path: Path
) -> None:
    process, running = run_peer(tiny_whisper_dir, tmp_path)
    first = WhisperCppTranscriber(spec(running.root))
    second = WhisperCppTranscriber(spec(running.root))
    try:
        await first.load()
        async with httpx.AsyncClient(trust_env=False, timeout=60) as client:
            swap = asyncio.create_task(
                client.post(f"{running.root}/load", files={"model": (None, str(tiny_whisper_dir))})
            )
            await wait_for(lambda: running.state()["loading"])
            health = await first.health()  # its /health answers (as a 404) while it loads
            assert health.state is EngineState.LOADING, health
            assert "loads a model" in health.detail
            seen = running.state()["health_while_loading"]
            loading = asyncio.create_task(second.load())
            await wait_for(lambda: running.state()["health_while_loading"] > seen)
            assert not loading.done()  # it waits for the model rather than failing
            running.gate.touch()
            assert (await swap).text == "Load was successful!"
            await loading
            assert second.state is EngineState.LOADED
            assert (await first.health()).state is EngineState.LOADED
            refused = await client.post(f"{running.root}/load", data={"model": "/nonexistent"})
            assert (refused.status_code, refused.text) == (400, "Invalid request")
            assert (await first.health()).state is EngineState.LOADING  # it stays so: its bug
    finally:
        await first.unload()
        await second.unload()
        stop_peer(process)


async def test_the_wire_as_whisper_cpp_sends_it(peer: Peer) -> None:
    """The peer's own faithfulness: what its error handler leaves of each answer."""
    async with httpx.AsyncClient(trust_env=False) as client:
        no_file = await client.post(f"{peer.root}/inference", data={"language": "en"})
        assert (no_file.status_code, no_file.text) == (400, "Invalid request")
        assert no_file.headers["server"] == "whisper.cpp"
        missing = await client.get(f"{peer.root}/v1/models")
        assert (missing.status_code, missing.text) == (404, "File Not Found (/v1/models)")
        assert (await client.get(f"{peer.root}/health")).json() == {"status": "ok"}


def mock_engine(handler: Any, **options: Any) -> WhisperCppTranscriber:
    engine = WhisperCppTranscriber(spec("http://whisper.invalid", **options))
    engine._client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return engine


async def test_a_503_loading_model_is_loading_too() -> None:
    """What the handler means (and a server whose error handler passes it on would send)."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"status": "loading model"})

    health = await mock_engine(handler).health()
    assert health.state is EngineState.LOADING and "loading its model" in health.detail


async def test_segment_times_stay_within_the_audio() -> None:
    """whisper.cpp's segment ends can run past the audio (seen from the real server)."""
    segments = [{"id": 0, "text": " hi", "start": 0.76, "end": 14.66, "no_speech_prob": 0.1}]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(200, json={"status": "ok"})
        return httpx.Response(200, json={"text": " hi\n", "segments": segments})

    engine = mock_engine(handler)
    await engine.load()
    [segment] = [s async for s in engine.transcribe(AUDIO)]
    assert (segment.start, segment.end, segment.text) == (0.76, 2.0, " hi")


async def test_an_error_in_a_200_answer_is_an_error() -> None:
    """Before v1.8.4 the server answered its errors with HTTP 200."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(200, json={"status": "ok"})
        return httpx.Response(200, content=json.dumps({"error": "failed to process audio"}))

    engine = mock_engine(handler)
    await engine.load()
    with pytest.raises(EngineCallError, match="transcribe: failed to process audio"):
        [_ async for _ in engine.transcribe(AUDIO)]


@pytest.mark.skipif(REAL_SERVER is None, reason="VO_TEST_WHISPER_SERVER names no whisper-server")
async def test_the_real_whisper_server(tmp_path: Path) -> None:
    """What the peer stands for, for real: supervised, ready, transcribing with "auto", loading
    (as its 404) after a refused /load until a /load succeeds."""
    assert REAL_SERVER is not None
    model = build_tiny_ggml_whisper(tmp_path)
    port = free_port()
    command = [REAL_SERVER, "--model", str(model), "--host", "127.0.0.1", "--port", str(port)]
    supervisor = Supervisor(tmp_path / "pids")
    engine = WhisperCppTranscriber(
        spec(f"http://127.0.0.1:{port}", supervise=True, command=command, timeout_s=300)
    )
    engine.use_supervisor(supervisor)
    try:
        await engine.load()
        assert (await engine.health()).state is EngineState.LOADED
        segments = [s async for s in engine.transcribe(AUDIO)]
        assert segments and all(0 <= s.start <= s.end <= 2.0 for s in segments)
        async with httpx.AsyncClient(trust_env=False, timeout=60) as client:
            root = f"http://127.0.0.1:{port}"
            assert (await client.post(f"{root}/load", data={})).text == "Invalid request"
            assert (await engine.health()).state is EngineState.LOADING
            reload = await client.post(f"{root}/load", files={"model": (None, str(model))})
            assert reload.text == "Load was successful!"
        assert (await engine.health()).state is EngineState.LOADED
        await engine.unload()
    finally:
        await supervisor.stop_all()
