"""The PersonaPlex engine under the supervisor, with tests/peers/personaplex_peer.py as the server
(run with the real server's arguments), and each missing piece reported as ``missing``."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest

from orchestrator.config import EngineConfig
from orchestrator.gpu.catalog import load_catalog
from services.base import AudioOut, DuplexModel, EngineSpec, EngineState, Role, Runtime
from services.duplex_client import ConnectionBusy, SessionEnded
from services.errors import EngineNotLoaded, InvalidInput, ModelMissing
from services.personaplex import PersonaPlexEngine, hub_paths
from services.process.supervisor import ProcessState, Supervisor
from services.registry import ADAPTERS
from tests.conftest import free_port
from tests.helpers import PERSONAPLEX_REPO as REPO
from tests.helpers import fill_hf_cache
from tests.peers.personaplex_peer import VOICES, make_voice_dir
from tests.peers.watch import alive, until_dead

ROOT = Path(__file__).resolve().parent.parent
FRAME = 1920
HF_VARIABLES = (
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_TOKEN_PATH",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "XDG_CACHE_HOME",
)


def engine_for(tmp: Path, **options: Any) -> PersonaPlexEngine:
    """The engine as a profile would configure it, pointed at the peer instead of moshi."""
    settings: dict[str, Any] = {
        "url": f"http://127.0.0.1:{free_port()}",
        "python": sys.executable,
        "module": "tests.peers.personaplex_peer",
        "cwd": str(ROOT),
        "voice_prompt_dir": str(make_voice_dir(tmp / "voices")),
        "voices": list(VOICES),
        "hf_home": str(tmp / "hf"),
        "offline": True,
        "stop_grace_s": 2.0,
        "ready_timeout_s": 60.0,
        "handshake_timeout_s": 30.0,
        "restart": {"enabled": False},
        **options,
    }
    spec = EngineSpec("duplex", Role.DUPLEX, REPO, tmp / "models", "cpu", options=settings)
    engine = PersonaPlexEngine(spec)
    engine.use_supervisor(Supervisor(None))
    return engine


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[PersonaPlexEngine]:
    pytest.importorskip("moshi", reason="the peer needs PyPI moshi (scripts/ensure-venv.sh dev)")
    fill_hf_cache(tmp_path / "hf")
    built = engine_for(tmp_path)
    yield built
    await built.stop_process()


def test_the_adapter_is_registered_for_the_duplex_role_and_planned_from_the_catalog() -> None:
    assert ADAPTERS["personaplex"][0] is Role.DUPLEX
    config = EngineConfig(role=Role.DUPLEX, adapter="personaplex", model=REPO, device="cuda")
    match = load_catalog().lookup(config.adapter, config.model, config.compute_type)
    assert match is not None and match.vram_bytes > 18 * 2**30


async def test_the_server_runs_with_the_real_arguments_and_unload_stops_it(
    engine: PersonaPlexEngine,
) -> None:
    assert isinstance(engine, DuplexModel) and engine.runtime is Runtime.MANAGED
    report = await engine.load()
    assert engine.state is EngineState.LOADED and report.seconds > 0
    process = engine.process
    assert process is not None and process.state is ProcessState.READY and process.pid
    cmdline = psutil.Process(process.pid).cmdline()
    for expected in ("--host", "127.0.0.1", "--static", "none", "--voice-prompt-dir"):
        assert expected in cmdline
    assert (await engine.health()).state is EngineState.LOADED
    assert engine.memory().measured_ram_bytes, "RSS of the server process tree"

    connection = await engine.open_session(engine.persona("You are a tutor.", None))
    try:
        for _ in range(3):
            await connection.send_frame(np.zeros(FRAME, dtype=np.float32))
        heard = 0
        while heard < 3 * FRAME:
            output = await asyncio.wait_for(connection.receive(), 30)
            heard += len(output.pcm) if isinstance(output, AudioOut) else 0
    finally:
        await connection.close()

    pid = process.pid
    await engine.unload()
    assert engine.state is EngineState.UNLOADED and not alive(pid)
    with pytest.raises(EngineNotLoaded):
        await engine.open_session(engine.persona("You are a tutor.", None))


async def test_unload_mid_conversation_ends_it_and_stops_the_server_within_the_grace(
    engine: PersonaPlexEngine,
) -> None:
    await engine.load()
    assert engine.process is not None and engine.process.pid is not None
    pid = engine.process.pid
    connection = await engine.open_session(engine.persona("Be brief.", "NATM1.pt"))
    try:
        await connection.send_frame(np.zeros(FRAME, dtype=np.float32))
        started = asyncio.get_running_loop().time()
        await engine.unload()  # SIGTERM; an open conversation keeps it up, so SIGKILL
        took = asyncio.get_running_loop().time() - started
        with pytest.raises(SessionEnded):
            async with asyncio.timeout(10):
                while True:
                    await connection.receive()
    finally:
        await connection.close()
    await until_dead(pid)
    assert took < engine.options.stop_grace_s + 5


def test_a_persona_must_use_a_configured_voice(tmp_path: Path) -> None:
    engine = engine_for(tmp_path)
    assert engine.persona(" Hi ", None).voice_prompt == "NATF2.pt"
    with pytest.raises(InvalidInput):
        engine.persona("", None)
    with pytest.raises(InvalidInput):
        engine.persona("Hi", "../../etc/passwd")


@pytest.mark.parametrize(
    ("change", "words", "hint"),
    [
        ({"python": "/nonexistent/venv/bin/python"}, "environment is missing", "install"),
        ({"voices": ["NATF2.pt", "VARF9.pt"]}, "voice prompts missing", "voices.tgz"),
        ({}, "lacks config.json, model.safetensors", "--weights"),
        ({"offline": False, "hf_token_env": "NO_SUCH_TOKEN_VAR"}, "gated", "licence"),
    ],
)
async def test_each_missing_piece_is_a_clear_engine_state(
    tmp_path: Path, change: dict[str, Any], words: str, hint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in HF_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "no-token-here"))
    engine = engine_for(tmp_path, **change)  # the HF cache is empty unless filled
    before = await engine.health()  # reported before anything tries to load it
    assert before.state is EngineState.MISSING and words in before.detail
    with pytest.raises(ModelMissing) as missing:
        await engine.load()
    assert words in missing.value.message and hint in missing.value.hint
    assert engine.state is EngineState.MISSING
    health = await engine.health()
    assert health.state is EngineState.MISSING and words in health.detail
    assert engine.process is None or engine.process.state is ProcessState.STOPPED


async def test_the_token_can_come_from_another_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_HF_TOKEN", "hf_secret")
    engine = engine_for(tmp_path, offline=False, hf_token_env="MY_HF_TOKEN")
    assert engine.missing_piece() is None
    assert engine.process_spec().env["HF_TOKEN"] == "hf_secret"
    assert "HF_HUB_OFFLINE" not in engine.process_spec().env


@pytest.mark.parametrize(
    ("where", "found"),
    [
        ("in hf_home, the server's HF_HOME", True),
        ("in our HF_HOME, which the server does not read", False),
        ("at HF_TOKEN_PATH given to the server", True),
    ],
)
def test_the_token_file_is_looked_for_where_the_server_will_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, found: bool
) -> None:
    for name in HF_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    ours, theirs = tmp_path / "our-hf", tmp_path / "hf"  # engine_for: hf_home = tmp/hf
    monkeypatch.setenv("HF_HOME", str(ours))
    options: dict[str, Any] = {"offline": False}
    if where.startswith("in hf_home"):
        token = theirs / "token"
    elif where.startswith("in our"):
        token = ours / "token"
    else:
        token = tmp_path / "elsewhere" / "token"
        options["env"] = {"HF_TOKEN_PATH": str(token)}
    token.parent.mkdir(parents=True)
    token.write_text("hf_secret")
    piece = engine_for(tmp_path, **options).missing_piece()
    assert (piece is None) is found, piece
    if piece is not None:
        assert str(theirs / "token") in piece.message and "gated" in piece.message


def test_the_cache_is_the_one_the_server_will_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in HF_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    engine = engine_for(tmp_path)  # hf_home = tmp/hf
    assert engine.hub_cache() == tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "shared-hub"))  # inherited: it wins
    assert engine.hub_cache() == tmp_path / "shared-hub"
    paths = hub_paths({"XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert paths.cache == tmp_path / "xdg" / "huggingface" / "hub"
    assert paths.token_file == tmp_path / "xdg" / "huggingface" / "token"
    assert not paths.token_set and hub_paths({"HUGGING_FACE_HUB_TOKEN": "hf_x"}).token_set


async def test_two_sessions_never_meet_at_the_servers_lock(engine: PersonaPlexEngine) -> None:
    """Two more sessions while one is open: the server would queue both and start the first
    with the second's persona (the peer does, as PersonaPlex). The engine refuses them before
    they reach it, whoever asks (the router already gives the engine to one session)."""
    await engine.load()
    url = engine.base_url
    async with httpx.AsyncClient(trust_env=False, timeout=60) as http:
        before = (await http.get(f"{url}/peer/state")).json()
        first = await engine.open_session(engine.persona("You are Ann, a tutor.", "NATF2.pt"))
        others = [
            asyncio.create_task(engine.open_session(engine.persona(text, voice)))
            for text, voice in (("You are Bob, a sailor.", "NATM1.pt"), ("You are Cy.", "NATF2.pt"))
        ]
        # refused here at once, or (without a slot) both queued at the server: whichever first
        queued = asyncio.create_task(
            http.get(f"{url}/peer/wait", params={"connections": before["connections"] + 3})
        )
        try:
            await asyncio.wait(
                [asyncio.gather(*others, return_exceptions=True), queued],
                return_when=asyncio.FIRST_COMPLETED,
            )
            await first.close()
            await asyncio.wait(others, return_when=asyncio.FIRST_COMPLETED)
            state = (await http.get(f"{url}/peer/state")).json()
            started = state["prefills"][len(before["prefills"]) :]
            assert all(p["asked"] == p["used"] for p in started), started
            assert state["wrong_persona"] == before["wrong_persona"]
            assert state["connections"] == before["connections"] + 1, "only the first reached it"
            for task in others:
                assert isinstance(task.exception(), ConnectionBusy)
        finally:
            queued.cancel()
            for task in others:
                task.cancel()
            for task in others:
                connection = await asyncio.gather(task, return_exceptions=True)
                if not isinstance(connection[0], BaseException):
                    await connection[0].close()
        again = await engine.open_session(engine.persona("You are Dee.", "NATM1.pt"))
        await again.close()
        last = (await http.get(f"{url}/peer/state")).json()["prefills"][-1]
        assert last["asked"] == last["used"] == {"voice": "NATM1.pt", "text": "You are Dee."}
