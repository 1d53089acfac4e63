"""``serve``: run the voice API and the console until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import os

from orchestrator.commands import CommandError
from orchestrator.config import AppConfig
from orchestrator.config.secrets import load_secrets

NAME = "serve"
HELP = "run the voice API and the console"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, config: AppConfig) -> int:
    from orchestrator.core.sites import PortInUse
    from orchestrator.server import serve

    # Number GPUs as NVML does (PCI bus order), so that cuda:N in this process and its engine
    # servers is GPU N of the planner and the telemetry; CUDA's own default puts the fastest
    # first. Before anything initialises CUDA; an operator's own setting stands.
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    secrets = load_secrets(config.state.dir)
    try:
        asyncio.run(serve(config, secrets))
    except PortInUse as exc:
        raise CommandError(str(exc)) from None
    return 0
