"""The ``local`` provider starts a real ``python -m orchestrator serve`` on the tiny engines,
sees it ready through its ``/health/ready`` (with the gateway's key, the only key the server
accepts), finds it again from a new provider (a restarted gateway), and stops its whole process
group."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from orchestrator.config import load_config
from orchestrator.config.gateway import LocalProvider
from orchestrator.gateway.providers.base import PowerState
from orchestrator.gateway.providers.local import LocalHost
from orchestrator.gateway.readiness import HttpReadyProbe

HOST_KEY = "gateway-host-key-0123"


@pytest.fixture
def local_config(tiny_config_file: Path) -> LocalProvider:
    port = load_config(config_file=tiny_config_file, environ={}).server.api_port
    return LocalProvider(
        serve_args=("--config", str(tiny_config_file)),
        url=f"http://127.0.0.1:{port}",
        stop_timeout_s=20,
    )


@pytest.fixture
async def host(local_config: LocalProvider, tmp_path: Path) -> AsyncIterator[LocalHost]:
    provider = LocalHost(local_config, tmp_path / "gateway", HOST_KEY)
    yield provider
    await provider.stop()


async def ready(url: str, timeout_s: float = 120.0) -> None:
    probe = HttpReadyProbe(HOST_KEY)
    try:
        async with asyncio.timeout(timeout_s):
            while not await probe(url):
                await asyncio.sleep(0.2)  # polling the server's readiness, as the controller does
    finally:
        await probe.close()


async def test_start_ready_adopt_and_stop_a_real_server(
    host: LocalHost, local_config: LocalProvider, tmp_path: Path
) -> None:
    assert (await host.status()).state is PowerState.STOPPED
    view = await host.start()
    assert view.state is PowerState.RUNNING and view.url == local_config.url
    await ready(local_config.url)

    async with aiohttp.ClientSession() as http:
        async with http.get(f"{local_config.url}/health/ready") as reply:
            assert reply.status == 401  # no key: the host is not open to anyone
        bearer = {"Authorization": "Bearer test-key-0123456789"}
        async with http.get(f"{local_config.url}/health/ready", headers=bearer) as reply:
            assert reply.status == 401  # a client's key is not the gateway's

    again = await host.start()  # idempotent: the same server
    assert again.instance == view.instance
    await host.close()

    restarted = LocalHost(local_config, tmp_path / "gateway", HOST_KEY)
    adopted = await restarted.status()
    assert adopted.state is PowerState.RUNNING and adopted.instance == view.instance

    pid = int(view.instance.rsplit(" ", 1)[1])
    pgid = os.getpgid(pid)
    stopped = await restarted.stop()
    assert stopped.state is PowerState.STOPPED
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)  # the whole group is gone


async def test_a_server_that_dies_is_reported_stopped_with_why(
    host: LocalHost, local_config: LocalProvider
) -> None:
    view = await host.start()
    pid = int(view.instance.rsplit(" ", 1)[1])
    os.killpg(os.getpgid(pid), 9)
    async with asyncio.timeout(30):
        while (status := await host.status()).state is not PowerState.STOPPED:
            await asyncio.sleep(0.05)  # the child is reaped by the event loop's watcher
    assert "exited" in status.detail or "gone" in status.detail
