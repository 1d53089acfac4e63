"""``wake``: wake a running server now (loads the preloaded engines), optionally keep it awake."""

from __future__ import annotations

import argparse

from orchestrator.commands.console_client import describe, post
from orchestrator.config import AppConfig

NAME = "wake"
HELP = "wake a running server now"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keep-awake", type=float, metavar="MINUTES", help="then hold it awake this long"
    )


def run(args: argparse.Namespace, config: AppConfig) -> int:
    summary = post(config, "/api/hibernation/wake")
    if args.keep_awake:
        summary = post(config, "/api/hibernation/keep-awake", {"minutes": args.keep_awake})
    print(describe(summary))
    return 0
