"""Command line: ``python -m orchestrator <command>``; each command is a module in ``commands/``.

Operator mistakes (bad config, a taken port, a server that is not running) end with one clear
line on stderr and exit status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from orchestrator import __version__
from orchestrator.commands import (
    Command,
    console_unlock,
    download,
    gateway,
    hibernate,
    install,
    plan,
    serve,
    simulate,
    status,
    wake,
)
from orchestrator.config import AppConfig, load_config
from orchestrator.core.logs import FORMATS, setup_logging
from services import nvml
from services.errors import VoiceOrchestratorError

COMMANDS: list[Command] = [
    serve,
    status,
    download,
    install,
    wake,
    hibernate,
    simulate,
    plan,
    console_unlock,
    gateway,
]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m orchestrator", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--profile", help="config profile (default: auto from the GPU)")
    common.add_argument("--config", type=Path, help="an extra TOML file layered on top")
    common.add_argument(
        "--log-level",
        default=os.environ.get("VO_LOG_LEVEL", "INFO"),
        help="our own log lines from this level (env VO_LOG_LEVEL; default INFO)",
    )
    common.add_argument(
        "--log-libraries",
        default=os.environ.get("VO_LOG_LIBRARIES", "WARNING"),
        help="libraries' log lines (APScheduler, aiohttp...) from this level"
        " (env VO_LOG_LIBRARIES; default WARNING)",
    )
    common.add_argument(
        "--log-format",
        choices=FORMATS,
        default=os.environ.get("VO_LOG_FORMAT", "text"),
        help="text, or json: one object per line for log shippers (env VO_LOG_FORMAT)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        sub = commands.add_parser(command.NAME, parents=[common], help=command.HELP)
        command.add_arguments(sub)
        sub.set_defaults(command_module=command)
    return parser


def _config(args: argparse.Namespace) -> AppConfig:
    gpus = nvml.list_gpus()
    return load_config(
        profile=args.profile,
        config_file=args.config,
        gpu_memory_bytes=gpus[0].total_bytes if gpus else None,
    )


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.log_format not in FORMATS:  # from VO_LOG_FORMAT: argparse checks only the flag
        parser.error(f"VO_LOG_FORMAT {args.log_format!r}: expected one of {', '.join(FORMATS)}")
    try:
        setup_logging(args.log_level, libraries=args.log_libraries, fmt=args.log_format)
    except ValueError as exc:
        parser.error(str(exc))
    command: Command = args.command_module
    try:
        return command.run(args, _config(args))
    except VoiceOrchestratorError as exc:  # ConfigError, CommandError and the rest: one line
        print(f"error: {exc}", file=sys.stderr)
        return 2
