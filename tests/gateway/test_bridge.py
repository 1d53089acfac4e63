"""The bridge: CPU engines beside the gateway answer while the host wakes, then hand over.

Both the bridge and the host are the real orchestrator API on the tiny cascade (two runtimes,
each with its own engines); the gate is scripted, so the test says when the host is ready.
Each runtime's LLM is recorded, so the test sees who answered each turn and with what history.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from orchestrator.api.app import create_api_app
from orchestrator.app.runtime import Runtime
from orchestrator.config import AppConfig
from orchestrator.config.secrets import Secrets
from orchestrator.gateway.keys import BRIDGE
from orchestrator.gateway.lifecycle import HostState
from tests.conftest import RuntimeFactory
from tests.gateway.clients import AUTH
from tests.gateway.conftest import Stack, StackFactory, base
from tests.gateway.test_realtime import dial

TUTOR = "You are a patient maths tutor."
Asked = list[list[dict[str, str]]]


@dataclass
class FixedBridge:
    """A ``Bridge`` at a fixed URL, ready while ``ready``."""

    address: str
    after_s: float = 0.2
    ready: bool = True

    def url(self) -> str | None:
        return self.address if self.ready else None


def record_llm(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Asked:
    """Every message list ``runtime``'s LLM is asked with."""
    llm = runtime.fleet.engine("llm")
    chat, asked = llm.chat, []

    def recording_chat(messages: list[dict[str, str]], **options: Any) -> Any:
        asked.append([dict(m) for m in messages])
        return chat(messages, **options)

    monkeypatch.setattr(llm, "chat", recording_chat)
    return asked


BridgedStack = Callable[..., Awaitable[tuple[Stack, Runtime]]]


@pytest.fixture
def bridged(
    make_stack: StackFactory,
    make_runtime: RuntimeFactory,
    aiohttp_server: Any,
    host_secrets: Secrets,
    short_replies: AppConfig,
) -> BridgedStack:
    async def make(**settings: Any) -> tuple[Stack, Runtime]:
        runtime = make_runtime(short_replies, secrets=host_secrets, writer=True)
        server: TestServer = await aiohttp_server(create_api_app(runtime))
        stack = await make_stack(
            short_replies, writer=True, bridge=FixedBridge(base(server)), **settings
        )
        return stack, runtime

    return make


@pytest.fixture
def short_replies(cascade_config: AppConfig) -> AppConfig:
    sessions = cascade_config.sessions.model_copy(
        update={"llm_options": {"max_new_tokens": 8, "min_new_tokens": 4}}
    )
    return cascade_config.model_copy(update={"sessions": sessions})


async def test_a_session_on_the_bridge_moves_to_the_host_between_turns_with_its_history(
    bridged: BridgedStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, bridge_runtime = await bridged()
    on_bridge = record_llm(bridge_runtime, monkeypatch)
    on_host = record_llm(stack.runtime, monkeypatch)
    async with aiohttp.ClientSession() as http:
        socket = await dial(stack, http)
        await socket.until("session.created")  # the bridge's: no hold
        await socket.send("session.update", session={"turn_detection": None, "instructions": TUTOR})
        await socket.until("session.updated")
        await socket.say("My name is Ada and I like fractions.")
        await socket.send("response.create")
        first = await socket.until("response.done")
        assert first["response"]["status"] == "completed"
        assert len(on_bridge) == 1 and not on_host
        said = first["response"]["output"][0]["content"][0]["transcript"]

        stack.gate.become_ready()
        changed = await socket.until("session.backend_changed")
        assert (changed["source"], changed["target"], changed["reason"]) == (
            "bridge",
            "host",
            "host_ready",
        )
        assert changed["gap_s"] >= 0
        await socket.say("What is my name?")
        await socket.send("response.create")
        second = await socket.until("response.done")
        assert second["response"]["status"] == "completed"

        assert len(on_bridge) == 1  # the second turn never reached the bridge
        ((system, *earlier, last),) = on_host
        assert system == {"role": "system", "content": TUTOR}
        assert earlier == [
            {"role": "user", "content": "My name is Ada and I like fractions."},
            {"role": "assistant", "content": said},
        ]
        assert last == {"role": "user", "content": "What is my name?"}
        kinds = socket.types()
        assert kinds.count("session.backend_changed") == 1
        assert kinds.count("session.created") == 1  # the host's was the gateway's to read
        assert kinds.count("session.updated") == 1
        assert kinds.count("response.created") == kinds.count("response.done") == 2
        assert "error" not in kinds
        await socket.ws.close()


async def test_the_move_waits_for_the_reply_in_progress(
    bridged: BridgedStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host becomes ready while the bridge is replying: the reply ends on the bridge,
    then the session moves."""
    stack, _bridge_runtime = await bridged()
    on_host = record_llm(stack.runtime, monkeypatch)
    async with aiohttp.ClientSession() as http:
        socket = await dial(stack, http)
        await socket.send("session.update", session={"turn_detection": None})
        await socket.say("Tell me about triangles.")
        await socket.send("response.create")
        await socket.until("response.created")
        stack.gate.become_ready()
        done = await socket.until("response.done")
        assert done["response"]["status"] == "completed"  # not cut by the move
        await socket.until("session.backend_changed")
        kinds = socket.types()
        assert kinds.index("session.backend_changed") > kinds.index("response.done")
        assert not on_host
        await socket.ws.close()


async def test_rest_during_a_wake_is_served_by_the_bridge_after_bridge_after_s(
    bridged: BridgedStack,
) -> None:
    stack, _bridge_runtime = await bridged()
    async with aiohttp.ClientSession() as http:
        async with http.get(stack.url + "/v1/models", headers=AUTH) as reply:
            assert reply.status == 200
            assert reply.headers["X-Voice-Waking"].split(",")[0] == "host"
            assert reply.headers["X-Voice-Bridge"] == "1"
            assert (await reply.json())["data"]
        assert stack.gate.state is HostState.STARTING  # the host was woken all the same
        assert stack.gate.uses == ["request"]
        stack.gate.become_ready()
        async with http.get(stack.url + "/v1/models", headers=AUTH) as reply:
            assert reply.status == 200
            assert "X-Voice-Bridge" not in reply.headers
            assert "X-Voice-Waking" not in reply.headers


async def test_a_bridge_not_ready_leaves_the_session_held_for_the_host(
    bridged: BridgedStack,
) -> None:
    stack, _bridge_runtime = await bridged()
    fixed = stack.gateway.app[BRIDGE]
    assert isinstance(fixed, FixedBridge)
    fixed.ready = False
    async with aiohttp.ClientSession() as http:
        socket = await dial(stack, http)
        await socket.until("waking")
        await stack.gate.until(lambda: stack.gate.waiting == 1)
        stack.gate.become_ready()
        await socket.until("session.created")
        assert "session.backend_changed" not in socket.types()
        await socket.ws.close()
