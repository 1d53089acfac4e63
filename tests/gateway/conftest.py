"""The gateway's test stack: client -> gateway -> cable -> host.

The host is the real orchestrator API (``create_api_app``) on the tiny engines, whose only
key is the gate's ``HOST_KEY``: the clients' ``API_KEY`` opens the gateway and nothing else.
The gate is scripted (``scripted_gate.py``); the cable (``cable.py``) lets a test kill the
host as the gateway sees it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from orchestrator.api.app import create_api_app
from orchestrator.app.runtime import Runtime
from orchestrator.config import AppConfig, GatewayConfig
from orchestrator.config.secrets import Secrets
from orchestrator.gateway.app import create_gateway_app
from orchestrator.gateway.gate import Bridge
from tests.conftest import CONSOLE_PASSWORD, RuntimeFactory
from tests.gateway.cable import Cable
from tests.gateway.scripted_gate import ScriptedGate

HOST_KEY = "host-key-of-the-gateway-4242"


def base(server: TestServer) -> str:
    return f"http://{server.host}:{server.port}"


@dataclass
class Stack:
    runtime: Runtime
    host: TestServer
    cable: Cable
    gate: ScriptedGate
    gateway: TestServer

    @property
    def url(self) -> str:
        return base(self.gateway)

    @property
    def ws(self) -> str:
        return "ws" + self.url[len("http") :]


StackFactory = Callable[..., Awaitable[Stack]]


@pytest.fixture
def host_secrets() -> Secrets:
    return Secrets(api_keys=(HOST_KEY,), console_password=CONSOLE_PASSWORD)


@pytest.fixture
async def make_stack(
    make_runtime: RuntimeFactory, aiohttp_server: Any, host_secrets: Secrets, secrets: Secrets
) -> AsyncIterator[StackFactory]:
    """``await make_stack(config, writer=..., ready=..., bridge=..., **gateway_settings)``: a
    host on ``config`` (``writer=True`` for voice sessions), the gate already READY if
    ``ready``, the gateway with ``bridge`` if given."""
    made: list[Stack] = []

    async def make(
        config: AppConfig,
        *,
        writer: bool = False,
        ready: bool = False,
        bridge: Bridge | None = None,
        **settings: Any,
    ) -> Stack:
        runtime = make_runtime(config, secrets=host_secrets, writer=writer)
        host: TestServer = await aiohttp_server(create_api_app(runtime))
        cable = await Cable(host.host, host.port).start()
        gate = ScriptedGate(cable.url, HOST_KEY)
        if ready:
            gate.become_ready()
        gateway_config = GatewayConfig(**{"hold_s": 30.0, **settings})
        gateway: TestServer = await aiohttp_server(
            create_gateway_app(
                gate, gateway_config, secrets, events_heartbeat_s=0.05, bridge=bridge
            )
        )
        made.append(Stack(runtime, host, cable, gate, gateway))
        return made[-1]

    yield make
    for stack in made:  # the gateway first: its sessions end before the cable is cut
        await stack.gateway.close()
        await stack.cable.close()
