"""What the bench scripts share: the tiny offline engines' config and a served runtime.

Bench scripts run as files (``python bench/NAME.py``), so this module is imported by its plain
name with the ``bench`` folder on ``sys.path``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from orchestrator.api.app import create_api_app
from orchestrator.app.runtime import Runtime
from orchestrator.config import load_config
from orchestrator.config.secrets import Secrets
from services import measure

KEY = "bench-key"
# The server sets glibc up before anything runs in threads (its in-process engines do, when the
# runtime is made); a bench process builds the tiny models first, so it does it here, or the
# threads of those builds would leave the server heap arenas it never has.
measure.keep_large_allocations_returnable()


def tiny_config(scratch: Path, extra_toml: str = "") -> Path:
    """A config file for the tiny test engines, built offline (noise models: the figures
    measure the orchestrator's plumbing, not a real model's speed)."""
    from tests.conftest import cascade_toml
    from tests.fixtures.tiny_llm import build_tiny_llm
    from tests.fixtures.tiny_piper import build_tiny_piper_voice
    from tests.fixtures.tiny_whisper import build_tiny_whisper

    text = cascade_toml(
        build_tiny_whisper(scratch / "w"),
        build_tiny_piper_voice(scratch / "p"),
        build_tiny_llm(scratch / "l"),
        scratch,
    )
    path = scratch / "bench.toml"
    path.write_text(text + extra_toml)
    return path


@dataclass(frozen=True)
class Served:
    runtime: Runtime
    port: int


@asynccontextmanager
async def served(config_file: Path) -> AsyncIterator[Served]:
    """The voice API on a free loopback port, with the bench key; stopped cleanly on exit."""
    config = load_config(config_file=config_file, environ={})
    runtime = Runtime.create(config, Secrets((KEY,), "x"))
    runtime.hibernator.start()
    runner = web.AppRunner(create_api_app(runtime))
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield Served(runtime, runner.addresses[0][1])
    finally:
        await runner.cleanup()
        await runtime.stop()


def gateway_config(scratch: Path, host_file: Path, bridge_file: Path | None = None) -> Path:
    """A gateway config on free loopback ports whose ``local`` provider runs ``host_file``'s
    server as the host (and, given ``bridge_file``, that server as the bridge)."""
    from tests.conftest import free_port

    def url(config_file: Path) -> str:
        port = load_config(config_file=config_file, environ={}).server.api_port
        return f"http://127.0.0.1:{port}"

    bridge = (
        f'[gateway.bridge]\nenabled = true\nserve_args = ["--config", "{bridge_file}"]\n'
        f'url = "{url(bridge_file)}"\n'
        if bridge_file is not None
        else ""
    )
    path = scratch / "gateway.toml"
    path.write_text(
        f"""
profile = "cpu"
[state]
dir = "{scratch / "gateway-state"}"
[gateway]
host = "127.0.0.1"
port = {free_port()}
console_port = {free_port()}
hold_s = 300
poll_s = 0.1
[gateway.provider]
kind = "local"
serve_args = ["--config", "{host_file}"]
url = "{url(host_file)}"
{bridge}"""
    )
    return path
