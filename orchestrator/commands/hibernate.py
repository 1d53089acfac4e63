"""``hibernate``: send a running server down the idle ladder now."""

from __future__ import annotations

import argparse

from orchestrator.commands.console_client import describe, post
from orchestrator.config import AppConfig
from orchestrator.core.idle import IdleState

NAME = "hibernate"
HELP = "put a running server into an idle state now"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    deeper = [s.value for s in IdleState if s is not IdleState.ACTIVE]
    parser.add_argument("--state", choices=deeper, default="cold", help="target (default cold)")


def run(args: argparse.Namespace, config: AppConfig) -> int:
    print(describe(post(config, "/api/hibernation/hibernate", {"state": args.state})))
    return 0
