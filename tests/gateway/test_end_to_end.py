"""The gateway end to end on this machine: the ``local`` provider runs a real orchestrator
(``python -m orchestrator serve`` on the tiny cascade engines) as the GPU host, and the app's
side is the official ``openai`` SDK or a raw Realtime socket. Nothing is scripted but the
failing start command of the last test."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import stat
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import openai
import pytest

from orchestrator.config import AppConfig, load_config
from orchestrator.config.secrets import Secrets
from orchestrator.gateway.lifecycle import HostState
from orchestrator.gateway.providers.base import PowerState
from orchestrator.gateway.serve import GatewayServer
from tests.conftest import API_KEY, CONSOLE_PASSWORD, free_port
from tests.gateway.hosted import reach
from tests.realtime_client import Socket
from tests.speech import silence, speak
from tests.test_voice_api import wav_bytes

HOST_KEY = "gateway-host-key-e2e-0123"
RATE = 24_000
SECRETS = Secrets(api_keys=(API_KEY,), console_password=CONSOLE_PASSWORD)

Make = Callable[..., AppConfig]


def gateway_toml(tmp: Path, provider: str, **gateway: Any) -> str:
    settings = {"hold_s": 180, "poll_s": 0.05, "stop_after_s": 600, "drain_s": 1, **gateway}
    lines = "\n".join(f"{key} = {value!r}" for key, value in settings.items())
    return f"""
profile = "cpu"

[state]
dir = "{tmp / "gateway-state"}"

[gateway]
host = "127.0.0.1"
port = {free_port()}
console_port = {free_port()}
{lines}

[gateway.provider]
{provider}
"""


@pytest.fixture
def host_url(cascade_config_file: Path) -> str:
    port = load_config(config_file=cascade_config_file, environ={}).server.api_port
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def make_config(tmp_path: Path, cascade_config_file: Path, host_url: str) -> Make:
    def build(**gateway: Any) -> AppConfig:
        provider = (
            f'kind = "local"\nserve_args = ["--config", "{cascade_config_file}"]\n'
            f'url = "{host_url}"\nstop_timeout_s = 20'
        )
        path = tmp_path / "gateway.toml"
        path.write_text(gateway_toml(tmp_path, provider, **gateway))
        return load_config(config_file=path, environ={})

    return build


@pytest.fixture
async def gateways() -> AsyncIterator[list[GatewayServer]]:
    """Every gateway a test starts; each is stopped after it (stopping its local host)."""
    started: list[GatewayServer] = []
    yield started
    for server in reversed(started):
        await server.stop()


async def run_gateway(config: AppConfig, started: list[GatewayServer]) -> GatewayServer:
    server = GatewayServer(config, SECRETS, HOST_KEY)
    await server.start()
    started.append(server)
    return server


def client(server: GatewayServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0, timeout=240
    )


def host_pid(server: GatewayServer) -> int:
    return int(server.controller.snapshot().instance.rsplit(" ", 1)[1])


def spoken(text: str) -> list[str]:
    samples = np.concatenate([speak(text, RATE), silence(0.5, RATE)])
    pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes()
    step = RATE  # 500 ms of PCM16
    return [base64.b64encode(pcm[i : i + step]).decode() for i in range(0, len(pcm), step)]


async def open_realtime(server: GatewayServer, http: aiohttp.ClientSession) -> Socket:
    ws = await http.ws_connect(
        f"{server.url}/v1/realtime", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    return Socket(ws)


async def test_a_transcription_to_a_stopped_host_is_held_then_served(
    make_config: Make, gateways: list[GatewayServer]
) -> None:
    server = await run_gateway(make_config(), gateways)
    assert server.controller.snapshot().state is HostState.STOPPED
    sdk = client(server)
    first = await sdk.audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("a.wav", wav_bytes())
    )
    assert "host" in first.headers["X-Voice-Waking"].split(",")
    assert isinstance(first.parse().text, str)
    assert server.controller.snapshot().state is HostState.READY
    second = await sdk.audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("a.wav", wav_bytes())
    )
    assert "host" not in second.headers.get("X-Voice-Waking", "").split(",")
    await sdk.close()


async def test_a_realtime_session_opened_while_stopped_hears_waking_and_is_answered(
    make_config: Make, gateways: list[GatewayServer]
) -> None:
    server = await run_gateway(make_config(waking_interval_s=0.5), gateways)
    async with aiohttp.ClientSession() as http:
        socket = await open_realtime(server, http)
        # push-to-talk, sent at once: the student starts talking before the host is up
        await socket.send("session.update", session={"turn_detection": None})
        for chunk in spoken("Hello teacher, how are you today?"):
            await socket.send("input_audio_buffer.append", audio=chunk)
        await socket.send("input_audio_buffer.commit")
        await socket.send("response.create")
        waking = await socket.until("waking", timeout=30)
        assert waking["engines"] == ["host"] and waking["eta_s"] is not None
        done = await socket.until("response.done", timeout=240)
        assert done["response"]["status"] == "completed"
        kinds = socket.types()
        assert kinds.index("waking") < kinds.index("session.created")
        assert "conversation.item.input_audio_transcription.completed" in kinds
        assert any(k in kinds for k in ("response.audio.delta", "response.output_audio.delta"))
        await socket.ws.close()


async def test_an_idle_host_is_stopped_but_never_under_an_open_session(
    make_config: Make, gateways: list[GatewayServer]
) -> None:
    config = make_config(stop_after_s=1.0, drain_s=0.5)
    server = await run_gateway(config, gateways)
    async with aiohttp.ClientSession() as http:
        socket = await open_realtime(server, http)
        await socket.until("session.created", timeout=240)
        pid = host_pid(server)
        with server.controller.subscribe() as events:
            # five times the idle budget with the session open: not one step towards a stop
            deadline = time.time() + 5 * (config.gateway.stop_after_s + config.gateway.drain_s)
            while time.time() < deadline:
                await server.controller.settle()
                await asyncio.sleep(config.gateway.poll_s)  # pace the checks, no busy loop
            assert events.queue.empty()
            assert server.controller.snapshot().state is HostState.READY
        await socket.ws.close()
    await reach(server.controller, HostState.STOPPED)
    assert (await server.provider.status()).state is PowerState.STOPPED
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    kinds = [t.target for t in server.controller.transitions()]
    assert kinds[-3:] == ["draining", "stopping", "stopped"]


async def test_a_host_killed_mid_session_ends_it_and_the_next_request_starts_it_again(
    make_config: Make, gateways: list[GatewayServer]
) -> None:
    server = await run_gateway(make_config(), gateways)
    async with aiohttp.ClientSession() as http:
        socket = await open_realtime(server, http)
        await socket.until("session.created", timeout=240)
        first_pid = host_pid(server)
        os.killpg(os.getpgid(first_pid), signal.SIGKILL)
        error = await socket.until("error", timeout=30)
        assert error["error"]["code"] == "host_lost"
        closing = await socket.ws.receive(timeout=30)
        assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 1011
    await reach(server.controller, HostState.STOPPED)
    sdk = client(server)
    again = await sdk.audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("a.wav", wav_bytes())
    )
    assert "host" in again.headers["X-Voice-Waking"].split(",")
    assert host_pid(server) != first_pid
    await sdk.close()


async def test_a_gateway_restarted_while_the_host_boots_carries_on(
    make_config: Make, gateways: list[GatewayServer]
) -> None:
    config = make_config()
    first = await run_gateway(config, gateways)
    await first.controller.wake("app")
    await reach(first.controller, HostState.BOOTING)
    pid = host_pid(first)
    gateways.remove(first)
    await first.stop(stop_local_host=False)  # the gateway dies; its host boots on

    second = await run_gateway(config, gateways)
    assert second.controller.snapshot().state in (HostState.BOOTING, HostState.READY)
    await second.controller.ready_url(240)
    assert host_pid(second) == pid  # the same server, adopted, not a second one
    starts = [t for t in second.controller.transitions() if t.target == "starting"]
    assert len(starts) == 1
    p50, _ = second.controller.expected_start()
    ready_at = second.controller.snapshot().since
    assert p50 == pytest.approx(ready_at - starts[0].at, abs=0.5)


async def test_a_start_that_finds_no_capacity_is_a_503_with_the_reason_and_backs_off(
    tmp_path: Path, gateways: list[GatewayServer]
) -> None:
    calls = tmp_path / "starts"
    script = tmp_path / "start.sh"
    script.write_text(
        f"#!/bin/sh\necho start >> {calls}\n"
        "echo 'ZONE_RESOURCE_POOL_EXHAUSTED: no a2-highgpu-1g left in europe-west4-a'\nexit 75\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    provider = (
        f'kind = "command"\nstart = "{script}"\nstop = "true"\n'
        f'status = "echo stopped"\nurl = "http://127.0.0.1:{free_port()}"'
    )
    path = tmp_path / "gateway.toml"
    path.write_text(gateway_toml(tmp_path, provider, backoff_s=300))
    server = await run_gateway(load_config(config_file=path, environ={}), gateways)
    sdk = client(server)
    for _ in range(2):
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk.audio.transcriptions.create(model="whisper-1", file=("a.wav", wav_bytes()))
        assert caught.value.status_code == 503
        body: Any = caught.value.body
        assert body["code"] == "host_start_failed"
        assert "ZONE_RESOURCE_POOL_EXHAUSTED" in body["message"]
        assert int(caught.value.response.headers["Retry-After"]) > 200
    assert calls.read_text().count("start") == 1  # the second was refused within the backoff
    await sdk.close()
