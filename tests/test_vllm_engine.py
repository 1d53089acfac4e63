"""The ``vllm`` adapter against tests/peers/vllm_peer.py: sleep mode as the parked state.

Parking sleeps the server (level 1: the peer drops its model, keeping the weights in RAM);
resuming wakes it, and the peer rebuilds the model from that copy, never from the files. A
server without the sleep endpoints says so (``CannotPark``) and keeps serving.
"""

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

from services.base import EngineSpec, EngineState, Parkable, Role, Runtime
from services.errors import CannotPark, EngineNotLoaded
from services.process.supervisor import ProcessState, Supervisor
from services.registry import ADAPTERS
from services.vllm_llm import VllmChat
from tests.conftest import free_port
from tests.peers.watch import StateLog, alive, next_engine_state, start_peer, stop_peer

ROOT = Path(__file__).resolve().parent.parent
MODEL = "tiny-llm"
HELLO = [{"role": "user", "content": "Hello there"}]


class Peer:
    def __init__(self, port: int) -> None:
        self.root = f"http://127.0.0.1:{port}"
        self.url = f"{self.root}/v1"

    def state(self) -> dict[str, Any]:
        with httpx.Client(trust_env=False) as client:
            answer: dict[str, Any] = client.get(f"{self.root}/peer/state").json()
        return answer


def serve(llm: Path, tmp: Path, *, dev_mode: bool, sleep_mode: bool) -> Iterator[Peer]:
    port = free_port()
    args = ["serve", str(llm), "--port", str(port), "--served-model-name", MODEL]
    args += ["--enable-sleep-mode"] if sleep_mode else []
    env = {"VLLM_SERVER_DEV_MODE": "1"} if dev_mode else {}
    process = start_peer("tests.peers.vllm_peer", args, env, port, tmp / "peer.log")
    yield Peer(port)
    stop_peer(process)


@pytest.fixture(scope="module")
def sleepy(tiny_llm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    yield from serve(tiny_llm_dir, tmp_path_factory.mktemp("vllm"), dev_mode=True, sleep_mode=True)


def build(url: str, **options: Any) -> VllmChat:
    spec = EngineSpec(
        name="llm",
        role=Role.LLM,
        model=MODEL,
        models_dir=Path("/nonexistent"),
        options={"url": url, "health_cache_s": 0, "max_new_tokens": 6, **options},
    )
    return VllmChat(spec)


@pytest.fixture
async def llm(sleepy: Peer) -> AsyncIterator[VllmChat]:
    engine = build(sleepy.url)
    yield engine
    await engine.unload()


async def reply(engine: VllmChat) -> str:
    return "".join([d async for d in engine.chat(HELLO, options={"max_new_tokens": 6})])


def test_registered_and_parkable() -> None:
    assert ADAPTERS["vllm"][0] is Role.LLM
    assert isinstance(build("http://127.0.0.1:1/v1"), Parkable)


async def test_park_sleeps_the_server_and_resume_wakes_it_without_a_reload(
    llm: VllmChat, sleepy: Peer
) -> None:
    assert llm.runtime is Runtime.REMOTE
    await llm.load()
    assert await reply(llm)
    before = sleepy.state()

    report = await llm.park()
    assert llm.state is EngineState.PARKED
    assert (await llm.health()).state is EngineState.PARKED
    assert sleepy.state()["is_sleeping"] is True
    with pytest.raises(EngineNotLoaded):
        await reply(llm)
    assert report.seconds > 0
    assert (await llm.park()).seconds == 0  # parking a parked engine does nothing

    resumed = await llm.load()
    assert resumed.resumed and llm.state is EngineState.LOADED
    assert await reply(llm)  # the model answers after resume
    after = sleepy.state()
    assert after["is_sleeping"] is False
    assert after["disk_loads"] == before["disk_loads"]  # woken from the kept copy
    assert (after["sleeps"], after["wakes"]) == (before["sleeps"] + 1, before["wakes"] + 1)


async def test_attaching_to_a_server_left_asleep_wakes_it(llm: VllmChat, sleepy: Peer) -> None:
    async with httpx.AsyncClient(trust_env=False) as client:
        (await client.post(f"{sleepy.root}/sleep", params={"level": "1"})).raise_for_status()
    assert sleepy.state()["is_sleeping"] is True
    report = await llm.load()
    assert not report.resumed  # we did not park it: a load, which finds it asleep
    assert sleepy.state()["is_sleeping"] is False
    assert await reply(llm)


async def test_unloading_a_parked_remote_engine_leaves_the_server_asleep(
    llm: VllmChat, sleepy: Peer
) -> None:
    await llm.load()
    await llm.park()
    await llm.unload()
    assert llm.state is EngineState.UNLOADED
    assert sleepy.state()["is_sleeping"] is True  # not ours to stop: the next load wakes it
    await llm.load()
    assert sleepy.state()["is_sleeping"] is False


@pytest.mark.parametrize("dev_mode", [False, True], ids=["no-dev-mode", "no-sleep-mode"])
async def test_a_server_without_sleep_mode_cannot_park_and_keeps_serving(
    tiny_llm_dir: Path, tmp_path: Path, dev_mode: bool
) -> None:
    peers = serve(tiny_llm_dir, tmp_path, dev_mode=dev_mode, sleep_mode=False)
    peer = next(peers)
    engine = build(peer.url)
    try:
        await engine.load()  # no /is_sleeping (404) or not asleep: a plain load
        with pytest.raises(CannotPark) as refused:
            await engine.park()
        assert "VLLM_SERVER_DEV_MODE=1" in str(refused.value)
        assert engine.state is EngineState.LOADED
        assert await reply(engine)
    finally:
        await engine.unload()
        next(peers, None)


def vllm_program(tmp_path: Path) -> Path:
    """A ``vllm`` on disk that runs the peer with the arguments ``vllm serve`` gets."""
    program = tmp_path / "vllm"
    program.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m tests.peers.vllm_peer "$@"\n')
    program.chmod(0o755)
    return program


async def test_supervised_runs_vllm_serve_with_sleep_mode_and_sleeps_again_after_a_crash(
    tiny_llm_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    llm = VllmChat(
        EngineSpec(
            name="llm",
            role=Role.LLM,
            model=str(tiny_llm_dir),
            models_dir=Path("/nonexistent"),
            options={
                "url": f"http://127.0.0.1:{port}/v1",
                "served_model": MODEL,
                "supervise": True,
                "binary": str(vllm_program(tmp_path)),
                "cwd": str(ROOT),
                "health_cache_s": 0,
                "restart": {"initial_delay_s": 0.05},
            },
        )
    )
    assert "--enable-sleep-mode" in llm.default_command()
    llm.use_supervisor(Supervisor(tmp_path / "pids"))
    peer = Peer(port)
    try:
        await llm.load()
        assert llm.runtime is Runtime.MANAGED and await reply(llm)
        await llm.park()  # answered only because the dev-mode variable reached the server
        memory = llm.memory()
        assert memory.parked_ram_bytes and memory.measured_ram_bytes is None
        process = llm.process
        assert process is not None and process.pid is not None
        first = process.pid
        states = StateLog(process)
        reparked = next_engine_state(llm)
        os.kill(first, signal.SIGKILL)
        await states.reach(ProcessState.CRASHED)
        assert await asyncio.wait_for(reparked, 60) is EngineState.PARKED
        assert peer.state()["is_sleeping"] is True  # the restarted server was put back to sleep
        assert (await llm.load()).resumed
        assert await reply(llm)
        second = process.pid
        assert second is not None and second != first
        await llm.unload()
        assert process.state is ProcessState.STOPPED and not alive(second)
    finally:
        await llm.unload()
