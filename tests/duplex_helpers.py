"""Shared by the duplex tests: a runtime whose duplex engine is the PersonaPlex peer
(tests/peers/personaplex_peer.py, supervised as the real server would be) beside the tiny
cascade, served by the real app; and small waits on the event bus."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from orchestrator.api.app import create_api_app
from orchestrator.app.runtime import Runtime
from orchestrator.config import load_config
from tests.conftest import RuntimeFactory, free_port
from tests.helpers import fill_hf_cache
from tests.peers.personaplex_peer import VOICES, make_voice_dir

ROOT = Path(__file__).resolve().parent.parent
ServerFactory = Callable[..., Any]  # (**duplex_toml options) -> awaitable (TestServer, Runtime)


def duplex_toml(
    tmp: Path, *, policy: str = "duplex-first", extra_args: str = "", failover: bool = True
) -> str:
    """The ``duplex`` engine (the peer, not started until loaded) and the ``[duplex]`` policy."""
    voices = make_voice_dir(tmp / "voices")
    hf_home = fill_hf_cache(tmp / "hf")
    return f"""
[engines.duplex]
role = "duplex"
adapter = "personaplex"
model = "nvidia/personaplex-7b-v1"
preload = false
[engines.duplex.options]
url = "http://127.0.0.1:{free_port()}"
python = "{sys.executable}"
module = "tests.peers.personaplex_peer"
cwd = "{ROOT}"
voice_prompt_dir = "{voices}"
voices = {list(VOICES)}
hf_home = "{hf_home}"
offline = true
stop_grace_s = 1.0
extra_args = [{extra_args}]
restart = {{ enabled = false }}

[duplex]
policy = "{policy}"
hang_timeout_s = 1.0
failover = {str(failover).lower()}
"""


def duplex_servers(
    cascade_config_file: Path, tmp_path: Path, make_runtime: RuntimeFactory, aiohttp_server: Any
) -> ServerFactory:
    """A factory of (server, runtime) with the peer as the duplex engine; ``make_runtime``
    stops every runtime made (its peer process with it) after the test. Each test module
    wraps it in a fixture."""
    pytest.importorskip("moshi", reason="the peer needs PyPI moshi (scripts/ensure-venv.sh dev)")

    async def make(**options: Any) -> tuple[TestServer, Runtime]:
        path = tmp_path / "duplex.toml"
        path.write_text(cascade_config_file.read_text() + duplex_toml(tmp_path, **options))
        runtime = make_runtime(load_config(config_file=path, environ={}), writer=True)
        server: TestServer = await aiohttp_server(create_api_app(runtime))
        return server, runtime

    return make


async def until_events(subscription: Any, kind: str, count: int) -> AsyncIterator[Any]:
    """Yield the next ``count`` events of ``kind`` as they are published."""
    seen = 0
    async for event in subscription:
        if event.type == kind:
            yield event
            seen += 1
            if seen == count:
                return


def only_session(runtime: Runtime) -> dict[str, Any]:
    (summary,) = runtime.session_summaries()
    return summary


def kill(runtime: Runtime) -> None:
    """SIGKILL the duplex engine's server, as a crash would end it."""
    process = runtime.fleet.engine("duplex").process  # type: ignore[attr-defined]
    os.kill(process.pid, signal.SIGKILL)
