"""What Ollama does that a lenient peer hid, against tests/peers/ollama_peer.py (v0.32.15):
one reply at a time unless OLLAMA_NUM_PARALLEL says more, names shown in their shortest stored
form, a reload on any change of runner options, no cap on a reply's length, and errors in the
middle of a stream."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.config import load_config
from orchestrator.core.metrics import Metrics
from orchestrator.fleet.fleet import Fleet
from orchestrator.fleet.health import engine_entry
from services.base import ChatModel, EngineSpec, EngineState, Role
from services.errors import EngineCallError
from services.ollama_llm import OllamaChat
from services.ollama_wire import model_key, server_parallelism
from services.process.supervisor import Supervisor
from services.server_errors import ServerUnavailable
from tests.conftest import free_port, tiny_profile_toml
from tests.peers.ollama_peer import RUNNER_STOPPED

NUM_CTX = 1024
ROOT = Path(__file__).resolve().parent.parent
HELLO = [{"role": "user", "content": "hello"}]
GREEDY = {"temperature": 0.0}  # the tiny model then never ends a reply on its own


@pytest.fixture(scope="module")
def peer_env(tiny_llm_dir: Path) -> dict[str, str]:
    models = ["tiny", "MixedCase", "someone/tiny", "mistral"]
    return {
        "OLLAMA_PEER_MODELS": ",".join(f"{name}={tiny_llm_dir}" for name in models),
        "OLLAMA_PEER_GPU": "1",
        "OLLAMA_PEER_TOKEN_DELAY": "0.01",
        "OLLAMA_PEER_UNLOAD_DELAY": "0.2",
    }


def engine_for(url: str, model: str = "tiny", sessions: int = 1, **options: Any) -> OllamaChat:
    spec = EngineSpec(
        name="llm",
        role=Role.LLM,
        model=model,
        models_dir=Path("/nonexistent"),
        options={"url": url, "num_ctx": NUM_CTX, **options},
        sessions=sessions,
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


async def peer_post(url: str, path: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
        return await client.post(url + path, json=body)


def shown(ps: dict[str, Any]) -> list[str]:
    return [m["model"] for m in ps["models"]]


# -- parallelism ---------------------------------------------------------------------------


def supervised_toml(
    tmp_path: Path, whisper: Path, piper: Path, peer_env: dict[str, str], port: int
) -> Path:
    """An Ollama LLM named like the catalog's Mistral (2 sessions), supervised, its server
    left to its defaults: nothing in options.env about parallelism."""
    env = ", ".join(f'{k} = "{v}"' for k, v in peer_env.items())
    command = f'["{sys.executable}", "-m", "tests.peers.ollama_peer", "serve"]'
    text = tiny_profile_toml(whisper, piper, tmp_path, preload=False).split("[engines.llm]")[0]
    text += (
        f'[engines.llm]\nrole = "llm"\nadapter = "ollama"\nmodel = "mistral"\npreload = false\n'
        f"[engines.llm.options]\n"
        f'url = "http://127.0.0.1:{port}"\nnum_ctx = {NUM_CTX}\nsupervise = true\n'
        f'command = {command}\ncwd = "{ROOT}"\nenv = {{ {env} }}\n'
    )
    path = tmp_path / "ollama.toml"
    path.write_text(text)
    return path


async def test_two_sessions_get_replies_at_once_and_health_says_how_many(
    peer_env: dict[str, str], tmp_path: Path, tiny_whisper_dir: Path, tiny_piper_onnx: Path
) -> None:
    """Ollama answers one request at a time by default: the second session's reply would wait
    for the first's whole reply. The adapter starts it with the plan's session count."""
    port = free_port()
    path = supervised_toml(tmp_path, tiny_whisper_dir, tiny_piper_onnx, peer_env, port)
    supervisor = Supervisor(tmp_path / "pids")
    fleet = Fleet(load_config(config_file=path, environ={}), Metrics(), supervisor=supervisor)
    url = f"http://127.0.0.1:{port}"
    try:
        async with fleet.lease(["llm"], timeout_s=60) as first_session:
            first = first_session["llm"]
            assert isinstance(first, ChatModel)
            long_reply = first.chat(HELLO, options={**GREEDY, "max_new_tokens": 400})
            async with aclosing(long_reply) as replying:
                assert await anext(replying)  # the first session's reply is under way
                async with fleet.lease(["llm"], timeout_s=60) as second_session:
                    second = second_session["llm"]
                    assert isinstance(second, ChatModel)
                    options = {**GREEDY, "max_new_tokens": 5}
                    assert [d async for d in second.chat(HELLO, options=options)]
                assert await anext(replying)  # and goes on after the second one ended
            state = await peer_get(url, "/peer/state")
        assert state["waited_for_slot"] == 0 and state["most_at_once"] == 2
        assert state["parallel"] == 2  # OLLAMA_NUM_PARALLEL, as the server read it
        entry = engine_entry(await fleet.status("llm"))["concurrent_sessions"]
        assert entry["planned"] == entry["serving"] == 2
        assert "OLLAMA_NUM_PARALLEL=2" in entry["detail"]
    finally:
        await fleet.stop()
        await supervisor.stop_all()


async def test_an_override_below_the_plan_is_read_back_and_reported(
    peer_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    engine = engine_for(
        f"http://127.0.0.1:{port}",
        sessions=2,
        supervise=True,
        command=[sys.executable, "-m", "tests.peers.ollama_peer", "serve"],
        cwd=str(ROOT),
        env={**peer_env, "OLLAMA_NUM_PARALLEL": "1"},  # the operator's word wins...
    )
    engine.use_supervisor(Supervisor(tmp_path / "pids"))
    assert engine.concurrency().detail == "starts with OLLAMA_NUM_PARALLEL=1"
    try:
        await engine.load()
        assert (await peer_get(f"http://127.0.0.1:{port}", "/peer/state"))["parallel"] == 1
        report = engine.concurrency()  # ...and health says what it costs
        assert (report.planned, report.serving) == (2, 1)
        assert "waits" in report.detail
    finally:
        await engine.stop_process()


async def test_a_server_we_do_not_run_has_unknown_parallelism(ollama_url: str) -> None:
    engine = engine_for(ollama_url, sessions=2)
    try:
        await engine.load()
        report = engine.concurrency()
        assert report.planned == 2 and report.serving is None
        assert "not run by us" in report.detail and "OLLAMA_NUM_PARALLEL=2" in report.detail
    finally:
        await engine.unload()


def test_the_server_config_line_is_read_as_ollama_logs_it() -> None:
    line = (
        'time=2026-01-01T00:00:00.000Z level=INFO source=routes.go:1951 msg="server config" '
        'env="map[HTTPS_PROXY: OLLAMA_HOST:http://127.0.0.1:11434 OLLAMA_NUM_PARALLEL:4 '
        'OLLAMA_ORIGINS:[http://localhost app://*]]"'
    )
    assert server_parallelism(["Listening on 127.0.0.1:11434", line]) == 4
    assert server_parallelism([line.replace(":4 ", ":0 ")]) == 1  # sched.go: at least one
    assert server_parallelism(["OLLAMA_NUM_PARALLEL:3 in some other line"]) is None


# -- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("configured", "listed"),
    [
        ("library/tiny", "tiny:latest"),
        ("registry.ollama.ai/library/tiny:latest", "tiny:latest"),
        ("TINY", "tiny:latest"),
        ("mixedcase", "MixedCase:latest"),  # shown in the case it was stored in
        ("Someone/Tiny:LATEST", "someone/tiny:latest"),
    ],
)
async def test_a_model_is_found_loaded_by_any_name_ollama_accepts(
    ollama_url: str, configured: str, listed: str
) -> None:
    engine = engine_for(ollama_url, configured)
    try:
        await engine.load()
        assert listed in shown(await peer_get(ollama_url, "/api/ps"))
        assert engine.state is EngineState.LOADED
        assert engine.memory().measured_vram_bytes  # its /api/ps entry was found
        assert (await engine.health()).state is EngineState.LOADED
        await engine.unload()  # and its unload is confirmed on /api/ps
        assert listed not in shown(await peer_get(ollama_url, "/api/ps"))
    finally:
        await engine.unload()


async def test_the_peer_lists_models_by_their_shortest_stored_name(ollama_url: str) -> None:
    names = [m["name"] for m in (await peer_get(ollama_url, "/api/tags"))["models"]]
    assert set(names) == {
        "tiny:latest",
        "MixedCase:latest",
        "someone/tiny:latest",
        "mistral:latest",
    }
    reply = await peer_post(ollama_url, "/api/generate", {"model": "MIXEDCASE", "keep_alive": 0})
    assert reply.json()["model"] == "MIXEDCASE"  # a reply echoes the name as sent


def test_names_compare_as_ollama_parses_them() -> None:
    same = ["mistral", "Mistral:latest", "library/mistral", "registry.ollama.ai/library/mistral"]
    assert len({model_key(name) for name in same}) == 1
    assert model_key("mistral:7b") != model_key("mistral")
    assert model_key("someone/mistral") != model_key("mistral")
    assert model_key("host:5000/team/m") == model_key("HOST:5000/team/m:latest")
    assert model_key("host:5000/team/m") != model_key("team/m")


# -- runner options --------------------------------------------------------------------------


async def test_runner_options_are_the_same_for_the_load_and_every_chat(ollama_url: str) -> None:
    engine = engine_for(
        ollama_url, "someone/tiny", model_options={"num_thread": 2, "num_batch": 64, "seed": 1}
    )
    before = await peer_get(ollama_url, "/peer/state")
    try:
        await engine.load()
        caller = {**GREEDY, "max_new_tokens": 3, "num_gpu": 3, "num_ctx": 99, "use_mmap": False}
        assert [d async for d in engine.chat(HELLO, options=caller)]
    finally:
        await engine.unload()
    state = await peer_get(ollama_url, "/peer/state")
    loads = state["loads"]["someone/tiny:latest"] - before["loads"].get("someone/tiny:latest", 0)
    assert loads == 1  # the chat did not reload the model
    load, chat = [r["body"] for r in state["requests"][len(before["requests"]) :]][:2]
    runner = {"num_ctx": NUM_CTX, "num_thread": 2, "num_batch": 64}
    assert load["options"] == runner
    assert chat["options"] == {**runner, "seed": 1, "temperature": 0.0, "num_predict": 3}


async def test_the_peer_reloads_on_any_runner_option_but_num_gpu_minus_one(
    ollama_url: str,
) -> None:
    async def loads_after(options: dict[str, Any]) -> int:
        body = {"model": "tiny", "keep_alive": -1, "options": {"num_ctx": NUM_CTX, **options}}
        assert (await peer_post(ollama_url, "/api/generate", body)).status_code == 200
        return int((await peer_get(ollama_url, "/peer/state"))["loads"]["tiny:latest"])

    first = await loads_after({})
    assert await loads_after({"num_gpu": -1}) == first
    assert await loads_after({"num_thread": 3}) == first + 1
    assert await loads_after({"num_thread": 3, "use_mmap": True}) == first + 2
    assert await loads_after({"num_thread": 3, "use_mmap": True}) == first + 2
    await peer_post(ollama_url, "/api/generate", {"model": "tiny", "keep_alive": 0})


def test_num_ctx_belongs_to_the_options_not_model_options() -> None:
    with pytest.raises(ValueError, match=r"engines\.llm\.options\.model_options: .*num_ctx"):
        engine_for("http://127.0.0.1:1", model_options={"num_ctx": 8192})


# -- replies and errors ----------------------------------------------------------------------


async def test_a_reply_without_a_limit_is_not_cut_at_128_tokens(
    engine: OllamaChat, ollama_url: str
) -> None:
    await engine.load()
    before = (await peer_get(ollama_url, "/peer/state"))["cut_short"]
    async with aclosing(engine.chat(HELLO, options=GREEDY)) as reply:
        count = 0
        async for _delta in reply:
            count += 1
            if count == 200:
                break
    assert count == 200  # Ollama's default num_predict is -1: until the model stops
    state = await peer_get(ollama_url, "/peer/state")
    assert "num_predict" not in state["requests"][-1]["body"]["options"]
    # closing it stopped the generation: the peer notices when its next write fails
    async with asyncio.timeout(10):
        while state["cut_short"] == before:
            await asyncio.sleep(0.01)  # a bounded poll of the peer's counter, not a race
            state = await peer_get(ollama_url, "/peer/state")
    assert state["cut_short"] == before + 1


async def test_an_error_line_mid_stream_ends_the_reply_with_ollamas_message(
    engine: OllamaChat, ollama_url: str
) -> None:
    await engine.load()
    loads = (await peer_get(ollama_url, "/peer/state"))["loads"]["tiny:latest"]
    await peer_post(ollama_url, "/peer/fail", {"after_tokens": 3})
    got: list[str] = []
    with pytest.raises(EngineCallError) as failed:
        async for delta in engine.chat(HELLO, options={**GREEDY, "max_new_tokens": 50}):
            got.append(delta)
    assert len(got) == 3
    assert failed.value.transient and RUNNER_STOPPED in failed.value.message
    # the runner died: the next reply reloads it, and the engine goes on serving
    assert [d async for d in engine.chat(HELLO, options={**GREEDY, "max_new_tokens": 3})]
    assert (await peer_get(ollama_url, "/peer/state"))["loads"]["tiny:latest"] == loads + 1


async def test_an_error_before_any_content_is_a_500_with_ollamas_body(
    engine: OllamaChat, ollama_url: str
) -> None:
    await engine.load()
    await peer_post(ollama_url, "/peer/fail", {"after_tokens": 0})
    with pytest.raises(ServerUnavailable) as failed:
        await anext(engine.chat(HELLO, options={**GREEDY, "max_new_tokens": 5}))
    assert "HTTP 500" in failed.value.message and RUNNER_STOPPED in failed.value.message
    bad = await peer_post(ollama_url, "/api/chat", {"model": "tiny", "keep_alive": "-1"})
    assert bad.status_code == 400
    assert bad.json() == {"error": 'time: missing unit in duration "-1"'}
    absent = await peer_post(ollama_url, "/api/chat", {"model": "absent", "messages": HELLO})
    assert absent.status_code == 404 and absent.json() == {"error": "model 'absent' not found"}
