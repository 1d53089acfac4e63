"""``simulate``: replay a usage trace under our ladder, fixed-timeout shutdowns, always-on and
the gateway's policies (fixed idle stops and the learned pre-warm, without and with the bridge).

It answers the question the product exists for: how much longer do the credits last, and what
does a student wait for it. Load times are the defaults in ``orchestrator.credits.simulator`` unless
given with ``--load ROLE=SECONDS`` (e.g. the ``last_load_seconds`` a running server reports), and
so are resume times of parked roles (``--resume ROLE=SECONDS``; ``last_resume_seconds``).
The report is ``orchestrator.credits.report``'s, the one the console shows for an upload.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from orchestrator.commands import CommandError
from orchestrator.config import AppConfig
from orchestrator.credits.gateway_sim import DEFAULT_HINT_LEAD_S
from orchestrator.credits.report import format_report, replay, wake_costs
from orchestrator.credits.simulator import (
    DEFAULT_BOOT_S,
    DEFAULT_LOAD_S,
    DEFAULT_RESUME_S,
    DEFAULT_TIMEOUTS_MIN,
)
from orchestrator.credits.traces import TraceError, read_trace
from services.base import Role

NAME = "simulate"
HELP = "replay a usage trace: billed hours, credit multiplier, wake waits"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trace", type=Path, required=True, help="CSV (start,end) or JSONL")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--load",
        action="append",
        default=[],
        metavar="ROLE=SECONDS",
        help="load time of a role (repeatable); defaults: "
        + ", ".join(f"{role}={s:g}" for role, s in DEFAULT_LOAD_S.items()),
    )
    parser.add_argument(
        "--resume",
        action="append",
        default=[],
        metavar="ROLE=SECONDS",
        help="resume time of a parked role whose engine can park (repeatable); defaults: "
        + ", ".join(f"{role}={s:g}" for role, s in DEFAULT_RESUME_S.items()),
    )
    parser.add_argument(
        "--boot-s", type=float, default=DEFAULT_BOOT_S, help="host boot seconds (default 90)"
    )
    parser.add_argument(
        "--timeouts",
        default=",".join(f"{m:g}" for m in DEFAULT_TIMEOUTS_MIN),
        metavar="MINUTES,...",
        help="fixed-timeout policies to compare (default 15,30)",
    )
    parser.add_argument(
        "--hint-lead-s",
        type=float,
        default=DEFAULT_HINT_LEAD_S,
        help="seconds between the app opening (its POST /v1/wake) and its first request, for the"
        " gateway's policies (default 30; 0: no hint)",
    )


def _load_times(
    pairs: list[str], defaults: dict[Role, float] = DEFAULT_LOAD_S, flag: str = "--load"
) -> dict[Role, float]:
    times = dict(defaults)
    for pair in pairs:
        role, _, seconds = pair.partition("=")
        try:
            times[Role(role.strip())] = float(seconds)
        except ValueError:
            roles = ", ".join(r.value for r in Role)
            message = f"{flag} {pair!r}: expected ROLE=SECONDS, ROLE one of {roles}"
            raise CommandError(message) from None
        if not times[Role(role.strip())] >= 0:
            raise CommandError(f"{flag} {pair!r}: seconds must be zero or more")
    return times


def _timeouts(text: str) -> list[float]:
    try:
        minutes = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CommandError(f"--timeouts {text!r}: expected minutes like 15,30") from None
    if any(not m > 0 for m in minutes):
        raise CommandError(f"--timeouts {text!r}: minutes must be positive")
    return minutes


def run(args: argparse.Namespace, config: AppConfig) -> int:
    try:
        sessions = read_trace(args.trace)
    except TraceError as exc:
        raise CommandError(str(exc)) from None
    if args.boot_s < 0:
        raise CommandError("--boot-s must be zero or more")
    if not args.hint_lead_s >= 0:
        raise CommandError("--hint-lead-s must be zero or more")
    resume = _load_times(args.resume, DEFAULT_RESUME_S, "--resume")
    costs = wake_costs(config, _load_times(args.load), args.boot_s, resume)
    timeouts = _timeouts(args.timeouts)
    report = replay(sessions, costs, config, timeouts, hint_lead_s=args.hint_lead_s)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
