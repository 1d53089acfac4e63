"""``serve``: run the voice API and the console until SIGINT or SIGTERM.

``serve --ray`` runs the voice API on Ray Serve instead, one replica per GPU
(``orchestrator/scale``); Ray is imported only then (``pip install .[ray]``).
"""

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
    parser.add_argument(
        "--ray",
        action="store_true",
        help="serve on Ray Serve, one replica per GPU, as [scale] says (needs the ray extra)",
    )
    parser.add_argument(
        "--ray-address",
        help="the Ray cluster to join (default: RAY_ADDRESS, else a new one on this machine)",
    )


def run(args: argparse.Namespace, config: AppConfig) -> int:
    from orchestrator.core.sites import PortInUse
    from orchestrator.server import serve

    # Number GPUs as NVML does (PCI bus order), so that cuda:N in this process and its engine
    # servers is GPU N of the planner and the telemetry; CUDA's own default puts the fastest
    # first. Before anything initialises CUDA; an operator's own setting stands.
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    if args.ray:
        return _run_on_ray(config, args.ray_address)
    secrets = load_secrets(config.state.dir)
    try:
        asyncio.run(serve(config, secrets))
    except PortInUse as exc:
        raise CommandError(str(exc)) from None
    return 0


def _run_on_ray(config: AppConfig, address: str | None) -> int:
    try:
        from orchestrator.scale.app import run
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.partition(".")[0] not in ("ray", "fastapi", "starlette"):
            raise
        raise CommandError(
            f"serve --ray needs Ray Serve ({exc.name} is not installed): pip install '.[ray]'"
        ) from None
    run(config, address)
    return 0
