"""``gateway``: run the always-on front door that starts and stops the GPU host.

Runs on a small VM without a GPU: it imports no engine and no torch (``tests/gateway/
test_light.py``). The cloud providers need ``pip install '.[gateway]'``.
"""

from __future__ import annotations

import argparse
import asyncio

from orchestrator.commands import CommandError
from orchestrator.config import AppConfig
from orchestrator.config.secrets import load_host_key, load_secrets

NAME = "gateway"
HELP = "run the gateway in front of the GPU host (starts it on demand, stops it when idle)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, config: AppConfig) -> int:
    from orchestrator.core.sites import PortInUse
    from orchestrator.gateway.serve import serve_gateway

    secrets = load_secrets(config.state.dir)
    host_key = load_host_key(config.state.dir)
    try:
        asyncio.run(serve_gateway(config, secrets, host_key))
    except PortInUse as exc:
        raise CommandError(str(exc)) from None
    except ModuleNotFoundError as exc:
        raise CommandError(
            f"the {config.gateway.provider.kind} provider needs {exc.name}: "
            "pip install '.[gateway]'"
        ) from None
    return 0
