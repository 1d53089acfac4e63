"""REST through the gateway: keys, holds, refusals and a host that dies.

The host is the real orchestrator API on the tiny engines (ASR and TTS), reached through a
cable the test can cut; it knows only the gate's key. The gate is scripted: the test says
when the host is ready, and sees every use, loss and wake the gateway reports.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import openai
import pytest

from orchestrator.config import AppConfig
from orchestrator.gateway.errors import HostStartFailed
from orchestrator.gateway.lifecycle import HostState
from tests.conftest import API_KEY
from tests.gateway.clients import AUTH, sdk, spoken_wav
from tests.gateway.conftest import HOST_KEY, StackFactory, base


async def test_a_transcription_through_the_gateway_with_the_openai_sdk(
    make_stack: StackFactory, tiny_config: AppConfig
) -> None:
    stack = await make_stack(tiny_config, ready=True)
    async with sdk(stack) as client:
        result = await client.audio.transcriptions.create(
            model="whisper-1", file=("hello.wav", spoken_wav("Hello there.")), language="en"
        )
        assert isinstance(result.text, str) and result.text
        assert stack.gate.uses == ["request"] and stack.gate.open["request"] == 0
        models = await client.models.list()
    assert {"asr", "tts", "whisper-1", "tts-1"} <= {m.id for m in models.data}


async def test_the_client_key_stays_at_the_gateway(
    make_stack: StackFactory, tiny_config: AppConfig
) -> None:
    stack = await make_stack(tiny_config, ready=True)
    async with aiohttp.ClientSession() as http:
        async with http.get(base(stack.host) + "/v1/models", headers=AUTH) as direct:
            assert direct.status == 401  # the host does not take the client's key
        async with http.get(
            base(stack.host) + "/v1/models", headers={"Authorization": f"Bearer {HOST_KEY}"}
        ) as with_host_key:
            assert with_host_key.status == 200
        async with http.get(stack.url + "/v1/models", headers=AUTH) as through:
            assert through.status == 200  # the gateway sent its own key
            ids = [m["id"] for m in (await through.json())["data"]]
            assert {"asr", "tts", "whisper-1", "tts-1"} <= set(ids)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": f"Basic {API_KEY}"},
        {"Authorization": f"Bearer {HOST_KEY}"},  # the host's key is not a client key
    ],
)
async def test_a_bad_client_key_is_401_and_never_reaches_the_gate(
    make_stack: StackFactory, tiny_config: AppConfig, headers: dict[str, str]
) -> None:
    stack = await make_stack(tiny_config)
    async with aiohttp.ClientSession() as http:
        for method, path in [("GET", "/v1/models"), ("POST", "/v1/wake"), ("GET", "/v1/host")]:
            async with http.request(method, stack.url + path, headers=headers) as response:
                assert response.status == 401
                assert response.headers["WWW-Authenticate"] == "Bearer"
                error = (await response.json())["error"]
                assert error["code"] == "invalid_api_key"
                assert error["type"] == "invalid_request_error"
    gate = stack.gate
    assert (gate.ready_calls, gate.uses, gate.wakes) == (0, [], [])
    assert gate.state is HostState.STOPPED


async def test_a_held_request_is_answered_once_the_host_is_ready(
    make_stack: StackFactory, tiny_config: AppConfig
) -> None:
    stack = await make_stack(tiny_config)
    gate = stack.gate
    async with aiohttp.ClientSession() as http:
        form = aiohttp.FormData()
        form.add_field("model", "whisper-1")
        form.add_field("file", spoken_wav("Good morning."), filename="a.wav")
        request = asyncio.ensure_future(
            http.post(stack.url + "/v1/audio/transcriptions", data=form, headers=AUTH)
        )
        await gate.until(lambda: gate.waiting == 1)  # held: the gate was asked and waits
        assert gate.state is HostState.STARTING and not request.done()
        assert gate.open["request"] == 1
        gate.become_ready()
        async with await request as response:
            assert response.status == 200, await response.text()
            # the host woke for it, then the host loaded its ASR engine for it
            assert response.headers["X-Voice-Waking"] == "host,asr"
            assert isinstance((await response.json())["text"], str)
        async with http.get(stack.url + "/v1/models", headers=AUTH) as again:
            assert "X-Voice-Waking" not in again.headers  # the host was up this time
    assert gate.open["request"] == 0


async def test_a_host_not_ready_within_the_hold_is_503_with_its_eta(
    make_stack: StackFactory, tiny_config: AppConfig
) -> None:
    stack = await make_stack(tiny_config, hold_s=0.05)
    async with sdk(stack) as client:
        with pytest.raises(openai.InternalServerError) as raised:
            await client.models.list()
    response = raised.value.response
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"  # min(ETA 42 s, 30 s)
    assert response.json() == {
        "error": {
            "type": "server_error",
            "code": "host_waking",
            "message": "the GPU host is waking up (starting); ready in about 42 s",
            "param": None,
            "state": "starting",
            "eta_s": 42.0,
        }
    }
    assert stack.gate.uses == ["request"]  # a request that came counts, answered or not


async def test_a_failed_start_is_503_with_the_reason(
    make_stack: StackFactory, tiny_config: AppConfig
) -> None:
    stack = await make_stack(tiny_config)
    stack.gate.failure = HostStartFailed("no capacity in europe-west4-a", retry_after_s=45)
    async with (
        aiohttp.ClientSession() as http,
        http.get(stack.url + "/v1/models", headers=AUTH) as response,
    ):
        assert response.status == 503
        assert response.headers["Retry-After"] == "45"
        error = (await response.json())["error"]
    assert error["code"] == "host_start_failed"
    assert error["message"] == "no capacity in europe-west4-a"
    assert error["retry_after_s"] == 45


async def test_a_dead_host_is_502_host_lost_and_the_gate_is_told(
    make_stack: StackFactory, tiny_config: AppConfig
) -> None:
    stack = await make_stack(tiny_config, ready=True)
    async with aiohttp.ClientSession() as http:
        async with http.get(stack.url + "/v1/models", headers=AUTH) as alive:
            assert alive.status == 200
        stack.cable.cut()
        async with http.get(stack.url + "/v1/models", headers=AUTH) as dead:
            assert dead.status == 502
            error = (await dead.json())["error"]
        assert error["code"] == "host_lost" and error["type"] == "server_error"
        assert len(stack.gate.lost) == 1 and "GET /v1/models" in stack.gate.lost[0]
        async with http.get(stack.url + "/health", headers=AUTH) as health:
            assert health.status == 200  # the gateway itself goes on


async def test_the_gateway_s_own_routes_are_not_passed_through(
    make_stack: StackFactory, tiny_config: AppConfig
) -> None:
    stack = await make_stack(tiny_config, ready=True)
    async with aiohttp.ClientSession() as http:
        for method, path in [
            ("POST", "/v1/host"),
            ("GET", "/v1/wake"),
            ("POST", "/v1/realtime"),
            ("DELETE", "/v1/host/events"),
        ]:
            async with http.request(method, stack.url + path, headers=AUTH) as response:
                assert response.status == 405, (method, path)
        async with http.get(stack.url + "/v1/realtime", headers=AUTH) as plain:
            assert plain.status == 400  # a WebSocket route without an upgrade
            assert "Upgrade" in (await plain.json())["error"]["message"]
        async with http.get(stack.url + "/v1/nowhere?x=1", headers=AUTH) as unknown:
            assert unknown.status == 404  # the host's answer, passed through
            assert (await unknown.json())["error"]["code"] == "not_found"
    assert stack.gate.uses == ["request"]  # only the unknown path went to the host


async def test_the_host_s_health_is_read_only_while_it_is_up(
    make_stack: StackFactory, tiny_config: AppConfig
) -> None:
    stack = await make_stack(tiny_config)
    gate = stack.gate
    async with aiohttp.ClientSession() as http:
        async with http.get(stack.url + "/host/metrics", headers=AUTH) as down:
            assert down.status == 503
            assert (await down.json())["error"]["state"] == "stopped"
        assert gate.state is HostState.STOPPED and gate.ready_calls == 0  # nothing woke
        gate.become_ready()
        async with http.get(stack.url + "/host/health", headers=AUTH) as up:
            assert up.status == 200
            assert "engines" in await up.json()
        async with http.get(stack.url + "/host/metrics", headers=AUTH) as metrics:
            assert metrics.status == 200
            assert "vo_" in await metrics.text()
    assert gate.uses == []  # reading health is not activity


async def test_a_host_that_refuses_the_gateway_s_key_is_502_not_the_client_s_fault(
    make_stack: StackFactory, tiny_config: AppConfig
) -> None:
    stack = await make_stack(tiny_config, ready=True)
    stack.gate.host_key = "not-the-host-s-key"  # a deployment mistake
    async with aiohttp.ClientSession() as http:
        async with http.get(stack.url + "/v1/models", headers=AUTH) as response:
            assert response.status == 502
            assert "WWW-Authenticate" not in response.headers
            assert (await response.json())["error"]["code"] == "host_key_rejected"
        socket = await http.ws_connect(stack.url + "/v1/realtime", headers=AUTH)
        message = await socket.receive(timeout=30)
        assert message.type is aiohttp.WSMsgType.TEXT
        assert json.loads(message.data)["error"]["code"] == "host_key_rejected"
        closing = await socket.receive(timeout=30)
        assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 1011
    assert stack.gate.lost == []


async def test_a_held_request_is_let_go_when_the_gateway_shuts_down(
    make_stack: StackFactory, tiny_config: AppConfig
) -> None:
    stack = await make_stack(tiny_config)  # the host never comes; the hold is 30 s
    gate = stack.gate
    async with aiohttp.ClientSession() as http:
        request = asyncio.ensure_future(http.get(stack.url + "/v1/models", headers=AUTH))
        await gate.until(lambda: gate.waiting == 1)
        async with asyncio.timeout(10):  # well within the hold: shutdown does not wait on it
            await stack.gateway.close()
        async with await request as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "5"
            assert (await response.json())["error"]["code"] == "service_unavailable"
    assert gate.open["request"] == 0 and gate.waiting == 0
