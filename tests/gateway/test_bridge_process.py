"""The bridge as the gateway runs it: a real ``python -m orchestrator serve`` on the tiny
cascade, started by ``BridgeProcess``.

The cascade profile preloads its VAD and LLM but not its ASR and TTS (``preload = false``), as
an operator's bridge config might: ``/health/ready`` answers long before a session could start
without loading. The gateway must call the bridge ready only with every engine a session uses
loaded, and the bridge's idle ladder must not unload them again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from orchestrator.api.app import create_api_app
from orchestrator.config import AppConfig, load_config
from orchestrator.config.gateway import BridgeConfig
from orchestrator.config.secrets import Secrets
from orchestrator.gateway.bridge import BridgeProcess, NotWarm, bridge_env, warm_up
from tests.conftest import RuntimeFactory
from tests.gateway import conftest as stack

HOST_KEY = "gateway-host-key-0123"
FAST_LADDER = {  # the operator's env: the ladder steps all the way down in seconds
    "VO__HIBERNATION__WARM_AFTER_S": "0.4",
    "VO__HIBERNATION__COOL_AFTER_S": "0.8",
    "VO__HIBERNATION__COLD_AFTER_S": "1.2",
    "VO__HIBERNATION__DORMANT_AFTER_S": "1.6",
    "VO__HIBERNATION__TICK_S": "0.2",
}


@pytest.fixture
def bridge_config(cascade_config_file: Path) -> BridgeConfig:
    server = load_config(config_file=cascade_config_file, environ={}).server
    return BridgeConfig(
        enabled=True,
        serve_args=("--config", str(cascade_config_file)),
        url=f"http://127.0.0.1:{server.api_port}",
        env=FAST_LADDER,
        stop_timeout_s=20,
    )


@pytest.fixture
async def bridge(bridge_config: BridgeConfig, tmp_path: Path) -> AsyncIterator[BridgeProcess]:
    process = BridgeProcess(bridge_config, tmp_path / "gateway", HOST_KEY, poll_s=0.2)
    await process.start()
    yield process
    await process.stop()


async def health(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {HOST_KEY}"}
    async with http.get(f"{url}/health", headers=headers) as reply:
        assert reply.status == 200
        body: dict[str, Any] = await reply.json()
        return body


def states(body: dict[str, Any]) -> dict[str, str]:
    return {name: engine["state"] for name, engine in body["engines"].items()}


async def test_the_bridge_is_ready_only_with_its_engines_loaded_and_keeps_them(
    bridge: BridgeProcess, bridge_config: BridgeConfig
) -> None:
    async with asyncio.timeout(240):
        await bridge.became_ready.wait()
    assert bridge.url() == bridge_config.url
    loaded = dict.fromkeys(("asr", "tts", "vad", "llm"), "loaded")
    async with aiohttp.ClientSession() as http:
        assert states(await health(http, bridge_config.url)) == loaded  # at once: no load left

        async with asyncio.timeout(60):  # the bridge's idle ladder goes all the way down
            while (body := await health(http, bridge_config.url))["hibernation"]["state"] != (
                "dormant"
            ):
                await asyncio.sleep(0.2)  # polling another process's state, as the gateway does
        assert states(body) == loaded  # and unloads nothing

        headers = {"Authorization": f"Bearer {HOST_KEY}"}
        url = bridge_config.url.replace("http", "ws", 1) + "/v1/realtime"
        async with http.ws_connect(url, headers=headers) as ws:  # the first student's session
            first = json.loads((await ws.receive(timeout=60)).data)
        assert first["type"] == "session.created"  # not "waking": nothing had to load


async def test_a_bridge_that_cannot_open_a_session_is_not_warm(
    make_runtime: RuntimeFactory,
    tiny_config: AppConfig,
    aiohttp_server: Any,
    host_secrets: Secrets,
) -> None:
    """The tiny profile has no VAD: its ``/health/ready`` answers, a session cannot open."""
    runtime = make_runtime(tiny_config, secrets=host_secrets, writer=True)
    server: TestServer = await aiohttp_server(create_api_app(runtime))
    async with aiohttp.ClientSession() as http:
        async with http.get(
            stack.base(server) + "/health/ready",
            headers={"Authorization": f"Bearer {stack.HOST_KEY}"},
        ) as reply:
            assert reply.status == 200
        with pytest.raises(NotWarm) as refused:
            await warm_up(http, stack.base(server), stack.HOST_KEY)
    assert "vad" in str(refused.value), refused.value  # what could not be leased


def test_the_bridge_listens_where_its_url_says_with_a_state_of_its_own(tmp_path: Path) -> None:
    config = BridgeConfig(enabled=True, url="http://127.0.0.1:11450", env={"VO_X": "1"})
    env = bridge_env(config, tmp_path)
    assert (env["VO__SERVER__API_HOST"], env["VO__SERVER__API_PORT"]) == ("127.0.0.1", "11450")
    assert "VO__SERVER__CONSOLE_PORT" not in env  # where its own config puts it
    assert env["VO__STATE__DIR"] == str(tmp_path / "bridge")
    assert env["VO_X"] == "1" and env["VO__HIBERNATION__ACTIONS__COLD__UNLOAD_ROLES"] == "[]"
    assert env["VO__HIBERNATION__ACTIONS__COOL__PARK_ROLES"] == "[]"  # nor parks (unloads Piper)
    mine = BridgeConfig(enabled=True, env={"VO__SERVER__API_PORT": "9999"})
    assert bridge_env(mine, tmp_path)["VO__SERVER__API_PORT"] == "9999"  # the operator wins
