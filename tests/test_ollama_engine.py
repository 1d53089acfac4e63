"""The Ollama adapter against tests/peers/ollama_peer.py, a faithful Ollama API on a tiny model."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.config import load_config
from orchestrator.core.metrics import Metrics
from orchestrator.fleet.fleet import Fleet
from orchestrator.fleet.health import engine_entry
from services.base import ChatModel, ChatUsage, EngineSpec, EngineState, Role, Runtime
from services.errors import EngineNotLoaded, ModelMissing
from services.ollama_llm import OllamaChat
from services.process.supervisor import ProcessState, Supervisor
from services.server_errors import ServerUnavailable
from tests.conftest import free_port, tiny_profile_toml
from tests.peers.ollama_peer import BadRequest, parse_keep_alive
from tests.peers.watch import StateLog, alive, next_engine_state

NUM_CTX = 1024


@pytest.fixture(scope="module")
def peer_env(tiny_llm_dir: Path) -> dict[str, str]:
    return {
        "OLLAMA_PEER_MODELS": f"tiny={tiny_llm_dir},other={tiny_llm_dir}",
        "OLLAMA_PEER_REGISTRY": f"pullme={tiny_llm_dir}",
        "OLLAMA_PEER_GPU": "1",
        "OLLAMA_PEER_TOKEN_DELAY": "0.01",
        "OLLAMA_PEER_UNLOAD_DELAY": "0.3",
    }


def engine_for(url: str, model: str = "tiny", **options: Any) -> OllamaChat:
    spec = EngineSpec(
        name="llm",
        role=Role.LLM,
        model=model,
        models_dir=Path("/nonexistent"),
        options={"url": url, "num_ctx": NUM_CTX, **options},
    )
    return OllamaChat(spec)


@pytest.fixture
async def engine(ollama_url: str) -> AsyncIterator[OllamaChat]:
    engine = engine_for(ollama_url)
    yield engine
    await engine.unload()


async def peer_get(url: str, path: str) -> Any:
    async with httpx.AsyncClient(trust_env=False) as client:
        return (await client.get(url + path)).json()


def resident(ps: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((m for m in ps["models"] if m["model"] == name), None)


async def test_load_makes_the_model_resident_until_we_unload_it(
    engine: OllamaChat, ollama_url: str
) -> None:
    assert engine.runtime is Runtime.REMOTE
    report = await engine.load()
    assert engine.state is EngineState.LOADED
    entry = resident(await peer_get(ollama_url, "/api/ps"), "tiny:latest")
    assert entry is not None
    assert entry["context_length"] == NUM_CTX
    assert datetime.fromisoformat(entry["expires_at"]).year > 2200  # keep_alive -1: forever
    assert report.vram_delta_bytes == entry["size_vram"] > 0
    memory = engine.memory()
    assert memory.measured_vram_bytes == entry["size_vram"]
    assert memory.measured_ram_bytes == entry["size"] - entry["size_vram"]
    await engine.unload()
    # Ollama expires the runner after answering; the adapter waited until /api/ps agreed
    assert resident(await peer_get(ollama_url, "/api/ps"), "tiny:latest") is None
    assert engine.state is EngineState.UNLOADED
    assert engine.memory().measured_vram_bytes is None


async def test_chat_streams_deltas_and_every_request_pins_keep_alive_and_num_ctx(
    engine: OllamaChat, ollama_url: str
) -> None:
    before = await peer_get(ollama_url, "/peer/state")
    await engine.load()
    messages = [{"role": "user", "content": "hello"}]
    options = {"max_new_tokens": 6, "num_ctx": 99, "temperature": 0.0}
    usage = ChatUsage()
    deltas = [d async for d in engine.chat(messages, options=options, usage=usage)]
    assert deltas and all(isinstance(d, str) and d for d in deltas)
    # Ollama's last part: prompt_eval_count, eval_count and done_reason
    assert usage.prompt_tokens > 0 and 1 <= usage.completion_tokens <= 6
    assert usage.finish_reason == ("length" if usage.completion_tokens == 6 else "stop")
    await engine.unload()
    state = await peer_get(ollama_url, "/peer/state")
    ours = [r for r in state["requests"][len(before["requests"]) :] if r["path"] != "/api/pull"]
    assert [r["path"] for r in ours] == ["/api/generate", "/api/chat", "/api/generate"]
    assert all("keep_alive" in r["body"] for r in ours)
    assert ours[0]["body"]["keep_alive"] == -1 and "prompt" not in ours[0]["body"]
    assert ours[1]["body"]["options"]["num_ctx"] == NUM_CTX  # the caller's 99 never reaches it
    assert ours[1]["body"]["options"]["num_predict"] == 6
    assert ours[2]["body"]["keep_alive"] == 0
    assert state["loads"]["tiny:latest"] - before["loads"].get("tiny:latest", 0) == 1  # no reload


async def test_closing_the_stream_stops_the_generation(engine: OllamaChat, ollama_url: str) -> None:
    await engine.load()
    before = (await peer_get(ollama_url, "/peer/state"))["cut_short"]
    options = {"max_new_tokens": 200, "temperature": 1.0}
    async with aclosing(engine.chat([{"role": "user", "content": "go"}], options=options)) as s:
        got = [await anext(s) for _ in range(3)]
    assert len(got) == 3
    deadline = 100
    while (await peer_get(ollama_url, "/peer/state"))["cut_short"] == before:
        deadline -= 1
        assert deadline, "the peer never saw the stream end early"
        await asyncio.sleep(0.05)


async def test_role_calls_need_a_loaded_model(engine: OllamaChat) -> None:
    with pytest.raises(EngineNotLoaded):
        await anext(engine.chat([{"role": "user", "content": "hi"}]))


async def test_missing_model_is_a_clear_state(ollama_url: str) -> None:
    engine = engine_for(ollama_url, "absent")
    with pytest.raises(ModelMissing) as missing:
        await engine.load()
    assert engine.state is EngineState.MISSING
    assert "ollama pull absent" in missing.value.hint
    health = await engine.health()
    assert health.state is EngineState.MISSING and "absent" in health.detail


async def test_missing_model_is_pulled_when_configured(ollama_url: str) -> None:
    engine = engine_for(ollama_url, "pullme", pull=True)
    try:
        await engine.load()
        assert engine.state is EngineState.LOADED
        names = [m["name"] for m in (await peer_get(ollama_url, "/api/tags"))["models"]]
        assert "pullme:latest" in names
    finally:
        await engine.unload()
    unknown = engine_for(ollama_url, "nosuchmodel", pull=True)
    with pytest.raises(ModelMissing, match="pull model manifest: file does not exist"):
        await unknown.load()


async def test_server_down_is_a_failed_state_with_a_reason() -> None:
    engine = engine_for(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ServerUnavailable) as down:
        await engine.load()
    assert down.value.transient
    assert engine.state is EngineState.FAILED
    health = await engine.health()
    assert health.state is EngineState.FAILED
    assert "cannot connect" in health.detail and "running?" in health.hint
    await engine.unload()
    assert engine.state is EngineState.UNLOADED


async def test_a_model_the_server_dropped_shows_as_unloaded(
    engine: OllamaChat, ollama_url: str
) -> None:
    await engine.load()
    async with httpx.AsyncClient(trust_env=False) as client:  # someone else unloads it
        await client.post(f"{ollama_url}/api/generate", json={"model": "tiny", "keep_alive": 0})
        for _ in range(100):
            if resident((await client.get(f"{ollama_url}/api/ps")).json(), "tiny:latest") is None:
                break
            await asyncio.sleep(0.05)
    health = await engine.health()
    assert health.state is EngineState.UNLOADED
    assert "no longer in /api/ps" in health.detail


def test_keep_alive_must_be_a_duration_ollama_accepts(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ValueError, match=r"engines\.llm\.options\.keep_alive"):
        engine_for("http://127.0.0.1:1", keep_alive="-1")  # Go's ParseDuration wants a unit
    with caplog.at_level(logging.WARNING, logger="services.server_options"):
        engine_for("http://127.0.0.1:1", nmu_ctx=2048)
    assert "engines.llm.options.nmu_ctx: not an option of this adapter" in caplog.text
    with pytest.raises(ValueError, match=r"engines\.llm\.options\.restart\.delay: unknown"):
        engine_for("http://127.0.0.1:1", restart={"delay": 1})
    assert engine_for("http://127.0.0.1:1", keep_alive="24h").options.keep_alive == "24h"
    # the peer parses keep_alive as Ollama does
    with pytest.raises(BadRequest, match="missing unit"):
        parse_keep_alive("-1")
    assert parse_keep_alive(-1) == parse_keep_alive("-1m") > parse_keep_alive("24h")
    assert parse_keep_alive(0).total_seconds() == parse_keep_alive("0").total_seconds() == 0
    assert parse_keep_alive("1h30m").total_seconds() == 5400


async def test_supervised_ollama_serve_comes_back_after_a_kill(
    peer_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    supervisor = Supervisor(tmp_path / "pids")
    engine = engine_for(
        f"http://127.0.0.1:{port}",
        supervise=True,
        command=[sys.executable, "-m", "tests.peers.ollama_peer", "serve"],
        cwd=str(Path(__file__).resolve().parent.parent),
        env=peer_env,
        restart={"initial_delay_s": 0.05},
        stop_grace_s=5,
    )
    engine.use_supervisor(supervisor)
    assert engine.runtime is Runtime.MANAGED
    try:
        await engine.load()
        process = engine.process
        assert process is not None and process.state is ProcessState.READY
        first = process.pid
        assert first is not None
        states = StateLog(process)
        reattached = next_engine_state(engine)
        os.kill(first, signal.SIGKILL)
        await states.reach(ProcessState.CRASHED)
        assert engine.state is EngineState.LOADING
        await states.reach(ProcessState.READY)
        view = engine.process_view()
        assert view is not None and view.state == "ready" and view.starts == 2
        assert view.pid not in (None, first)
        assert any("Listening on" in line for line in view.last_lines)
        url = f"http://127.0.0.1:{port}"
        # the adapter re-attaches the model in the new server
        assert await asyncio.wait_for(reattached, 60) is EngineState.LOADED
        assert engine.state is EngineState.LOADED
        assert resident(await peer_get(url, "/api/ps"), "tiny:latest") is not None
        deltas = [
            d
            async for d in engine.chat(
                [{"role": "user", "content": "hi"}], options={"max_new_tokens": 3}
            )
        ]
        assert deltas
        second = process.pid
        assert second is not None and second != first
        await engine.stop_process()
        assert process.state is ProcessState.STOPPED and not alive(second)
    finally:
        await supervisor.stop_all()


async def test_the_fleet_runs_an_ollama_engine_from_config(
    ollama_url: str, tmp_path: Path, tiny_whisper_dir: Path, tiny_piper_onnx: Path
) -> None:
    text = tiny_profile_toml(tiny_whisper_dir, tiny_piper_onnx, tmp_path, preload=False)
    text = text.split("[engines.llm]")[0] + (
        f'[engines.llm]\nrole = "llm"\nadapter = "ollama"\nmodel = "other"\npreload = false\n'
        f'options = {{ url = "{ollama_url}", num_ctx = {NUM_CTX}, keep_alive = "-1m" }}\n'
    )
    path = tmp_path / "ollama.toml"
    path.write_text(text)
    fleet = Fleet(load_config(config_file=path, environ={}), Metrics())
    try:
        async with fleet.lease(["llm"], timeout_s=60) as engines:
            llm = engines["llm"]
            assert isinstance(llm, ChatModel) and isinstance(llm, OllamaChat)
            assert [d async for d in llm.chat([{"role": "user", "content": "hi"}])]
        status = await fleet.status("llm")
        assert status.state == "loaded" and status.runtime == "remote"
        assert status.memory.measured_vram_bytes
        outcome = await fleet.unload("llm")
        assert outcome.unloaded
        assert resident(await peer_get(ollama_url, "/api/ps"), "other:latest") is None
    finally:
        await fleet.stop()


async def test_dormant_stops_a_server_whose_model_was_already_unloaded(
    peer_env: dict[str, str], tmp_path: Path, tiny_whisper_dir: Path, tiny_piper_onnx: Path
) -> None:
    """Unloading a model leaves ``ollama serve`` running; DORMANT's process stop ends it,
    and health shows the process with its output on the way."""
    port = free_port()
    command = f'["{sys.executable}", "-m", "tests.peers.ollama_peer", "serve"]'
    env = ", ".join(f'{k} = "{v}"' for k, v in peer_env.items())
    root = Path(__file__).resolve().parent.parent
    text = tiny_profile_toml(tiny_whisper_dir, tiny_piper_onnx, tmp_path, preload=False)
    text = text.split("[engines.llm]")[0] + (
        f'[engines.llm]\nrole = "llm"\nadapter = "ollama"\nmodel = "tiny"\npreload = false\n'
        f"[engines.llm.options]\n"
        f'url = "http://127.0.0.1:{port}"\nnum_ctx = {NUM_CTX}\nsupervise = true\n'
        f'command = {command}\ncwd = "{root}"\nenv = {{ {env} }}\n'
        "restart = { initial_delay_s = 0.05 }\n"
    )
    path = tmp_path / "ollama.toml"
    path.write_text(text)
    supervisor = Supervisor(tmp_path / "pids")
    fleet = Fleet(load_config(config_file=path, environ={}), Metrics(), supervisor=supervisor)
    engine = fleet.engine("llm")  # the fleet runs its server under the shared supervisor
    assert isinstance(engine, OllamaChat)
    seen: list[tuple[str, str]] = []
    fleet.on_state = lambda name, state: seen.append((name, state))
    try:
        before = await fleet.status("llm")  # nothing listens yet: that is not a failure
        assert before.state == "unloaded" and before.usable and "not started" in before.detail
        await fleet.load("llm")
        view = (await fleet.status("llm")).process
        assert view is not None and view.state == "ready" and view.pid is not None
        pid = view.pid
        assert supervisor.owned_pids()[pid] == "llm"
        assert any("Listening on" in line for line in view.last_lines)
        entry = engine_entry(await fleet.status("llm"))
        assert entry["process"]["state"] == "ready" and entry["process"]["pid"] == pid

        # a crash: the server comes back, the model is attached again, and the fleet says so
        reattached, heard = next_engine_state(engine), len(seen)
        os.kill(pid, signal.SIGKILL)
        assert await asyncio.wait_for(reattached, 60) is EngineState.LOADED
        assert seen[heard:] == [("llm", "loaded")]
        restarted = (await fleet.status("llm")).process
        assert restarted is not None and restarted.starts == 2 and restarted.pid is not None
        pid = restarted.pid

        assert (await fleet.unload("llm")).unloaded
        assert alive(pid)  # Ollama unloads the model and keeps serving
        ps = await peer_get(f"http://127.0.0.1:{port}", "/api/ps")
        assert resident(ps, "tiny:latest") is None

        [outcome] = await fleet.stop_managed()
        assert outcome.unloaded and outcome.reason == "process stopped"
        assert not alive(pid)
        stopped = (await fleet.status("llm")).process
        assert stopped is not None and stopped.state == "stopped"
        assert engine_entry(await fleet.status("llm"))["process"]["state"] == "stopped"
        [again] = await fleet.stop_managed()
        assert not again.unloaded and again.reason == "process not running"
        assert seen[:2] == [("llm", "loading"), ("llm", "loaded")]
        assert ("llm", "unloaded") in seen[2:]
    finally:
        await fleet.stop()
        await supervisor.stop_all()


@pytest.mark.parametrize("binary", ["vo-no-such-ollama", "/nonexistent/bin/ollama"])
async def test_a_missing_ollama_program_is_a_missing_engine_with_how_to_get_it(
    binary: str,
) -> None:
    engine = engine_for(f"http://127.0.0.1:{free_port()}", supervise=True, binary=binary)
    before = await engine.health()
    assert before.state is EngineState.MISSING and binary in before.detail
    assert "ollama.com/download" in before.hint
    with pytest.raises(ModelMissing, match="not found"):
        await engine.load()
    assert engine.state is EngineState.MISSING
    assert engine.process_view() is None  # nothing was started, nothing crash-loops
    await engine.unload()
    assert engine.state is EngineState.UNLOADED
