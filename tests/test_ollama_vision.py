"""The Ollama vision adapter against tests/peers/ollama_peer.py serving the tiny random LLaVA:
images travel base64 in each ``/api/chat`` message's ``images`` (ollama ``api/types.go``), the
load checks the ``vision`` capability (``/api/show``), and where the LLM is Ollama at the same
address both engines share one supervised ``ollama serve``."""

from __future__ import annotations

import base64
import sys
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.base import EngineSpec, EngineState, Role
from services.errors import EngineLoadError
from services.ollama_llm import OllamaChat
from services.ollama_vlm import OllamaVision
from services.process.supervisor import ProcessState, Supervisor
from services.registry import create_engine
from services.vision import Image
from tests.conftest import free_port
from tests.vision_helpers import image_bytes

PHOTO = image_bytes(40, 30)


@pytest.fixture(scope="module")
def peer_env(tiny_llm_dir: Path, tiny_vlm_dir: Path) -> dict[str, str]:
    return {
        "OLLAMA_PEER_MODELS": f"tiny={tiny_llm_dir},eyes={tiny_vlm_dir}",
        "OLLAMA_PEER_UNLOAD_DELAY": "0.1",
    }


def spec(url: str, model: str, name: str = "vlm", role: Role = Role.VLM, **options: Any) -> Any:
    return EngineSpec(name, role, model, Path("/nonexistent"), options={"url": url, **options})


@pytest.fixture
async def vlm(ollama_url: str) -> AsyncIterator[OllamaVision]:
    engine = create_engine("ollama", spec(ollama_url, "eyes"))
    assert isinstance(engine, OllamaVision)
    yield engine
    await engine.unload()


async def peer(url: str, path: str) -> Any:
    async with httpx.AsyncClient(trust_env=False) as client:
        return (await client.get(url + path)).json()


async def test_images_go_base64_in_the_message(vlm: OllamaVision, ollama_url: str) -> None:
    await vlm.load()
    assert vlm.state is EngineState.LOADED
    photo = Image(PHOTO, "png", 40, 30)
    messages = [
        {"role": "system", "content": "Tutor."},
        {"role": "user", "content": "What is this?", "images": [photo, photo]},
    ]
    async with aclosing(vlm.chat(messages, options={"max_new_tokens": 4})) as deltas:
        assert "".join([d async for d in deltas])
    chats = [r["body"] for r in (await peer(ollama_url, "/peer/state"))["requests"]]
    sent = [b for b in chats if b.get("messages")][-1]
    assert sent["model"] == "eyes" and sent["keep_alive"] == -1
    system, user = sent["messages"]
    assert "images" not in system
    assert user["images"] == [base64.b64encode(PHOTO).decode()] * 2
    assert user["content"] == "What is this?"


async def test_the_peer_refuses_what_ollama_cannot_decode(ollama_url: str) -> None:
    body = {"model": "eyes", "messages": [{"role": "user", "content": "x", "images": ["@@"]}]}
    async with httpx.AsyncClient(trust_env=False) as client:
        answer = await client.post(ollama_url + "/api/chat", json=body)
    assert answer.status_code == 400
    assert answer.json() == {"error": "illegal base64 data at input byte 0"}


async def test_a_text_model_cannot_be_the_vlm(ollama_url: str) -> None:
    engine = create_engine("ollama", spec(ollama_url, "tiny"))
    with pytest.raises(EngineLoadError, match=r"cannot read images \(its capabilities: completion"):
        await engine.load()
    assert engine.state is EngineState.FAILED
    ps = await peer(ollama_url, "/api/ps")
    assert [m["model"] for m in ps["models"] if m["model"] == "tiny:latest"] == []  # never loaded


async def test_the_llm_and_the_vlm_share_one_ollama_serve(
    peer_env: dict[str, str], tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    served = {
        "supervise": True,
        "command": [sys.executable, "-m", "tests.peers.ollama_peer", "serve"],
        "cwd": str(Path(__file__).resolve().parent.parent),
        "env": peer_env,
        "stop_grace_s": 5,
    }
    supervisor = Supervisor(tmp_path / "pids")
    llm = create_engine("ollama", spec(url, "tiny", name="llm", role=Role.LLM, **served))
    vlm = create_engine("ollama", spec(url, "eyes", **served))
    assert isinstance(llm, OllamaChat) and isinstance(vlm, OllamaVision)
    llm.use_supervisor(supervisor)
    vlm.use_supervisor(supervisor)
    try:
        await vlm.load()  # the VLM starts the server ...
        await llm.load()  # ... and the LLM joins it
        assert llm.process is vlm.process is not None
        assert [s.name for s in supervisor.statuses()] == ["vlm"]  # one process
        loaded = {m["model"] for m in (await peer(url, "/api/ps"))["models"]}
        assert loaded == {"tiny:latest", "eyes:latest"}
        await llm.unload()  # its model only: the server and the VLM stay
        assert vlm.state is EngineState.LOADED and llm.state is EngineState.UNLOADED
        loaded = {m["model"] for m in (await peer(url, "/api/ps"))["models"]}
        assert loaded == {"eyes:latest"}
        await llm.load()
        process = vlm.process
        assert process is not None
        # a VLM that fails (a text model: the LLM's own) and is then unloaded leaves the shared
        # server and the LLM's model up
        wrong = create_engine("ollama", spec(url, "tiny", name="wrong", **served))
        wrong.use_supervisor(supervisor)  # type: ignore[attr-defined]
        with pytest.raises(EngineLoadError):
            await wrong.load()
        await wrong.unload()
        assert process.state is ProcessState.READY and llm.state is EngineState.LOADED
        loaded = {m["model"] for m in (await peer(url, "/api/ps"))["models"]}
        assert loaded == {"tiny:latest", "eyes:latest"}
        await llm.stop_process()  # DORMANT: the one server stops, for both
        assert process.state is ProcessState.STOPPED
        assert vlm.state is EngineState.UNLOADED
    finally:
        await supervisor.stop_all()
