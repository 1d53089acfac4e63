"""One module per ``python -m orchestrator`` sub-command.

Each module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args, config) -> int``
and is listed in ``COMMANDS``; ``orchestrator.cli`` builds the parser from them. Operator
mistakes are raised as ``CommandError`` (or ``ConfigError``) and printed as one line.
"""

from __future__ import annotations

import argparse
from typing import Protocol

from orchestrator.config import AppConfig
from services.errors import VoiceOrchestratorError


class CommandError(VoiceOrchestratorError):
    """An operator-facing failure of a command: printed as one line, exit status 2."""

    code = "command_failed"
    status = 400


class Command(Protocol):
    NAME: str
    HELP: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace, config: AppConfig) -> int: ...
