"""``simulate``: replay a usage trace under our ladder, fixed-timeout shutdowns and always-on.

It answers the question the product exists for: how much longer do the credits last, and what
does a student wait for it. Load times are the defaults in ``orchestrator.credits.simulator`` unless
given with ``--load ROLE=SECONDS`` (e.g. the ``last_load_seconds`` a running server reports).
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.commands import CommandError
from orchestrator.config import AppConfig
from orchestrator.credits.simulator import (
    DEFAULT_BOOT_S,
    DEFAULT_LOAD_S,
    DEFAULT_TIMEOUTS_MIN,
    Session,
    SimResult,
    WakeCosts,
    simulate,
    standard_policies,
)
from orchestrator.credits.traces import TraceError, read_trace
from services.base import Role

NAME = "simulate"
HELP = "replay a usage trace: billed hours, credit multiplier, wake waits"
WAKE_STATES = ("warm", "cool", "cold", "dormant")


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
        "--boot-s", type=float, default=DEFAULT_BOOT_S, help="host boot seconds (default 90)"
    )
    parser.add_argument(
        "--timeouts",
        default=",".join(f"{m:g}" for m in DEFAULT_TIMEOUTS_MIN),
        metavar="MINUTES,...",
        help="fixed-timeout policies to compare (default 15,30)",
    )


def _load_times(pairs: list[str]) -> dict[Role, float]:
    times = dict(DEFAULT_LOAD_S)
    for pair in pairs:
        role, _, seconds = pair.partition("=")
        try:
            times[Role(role.strip())] = float(seconds)
        except ValueError:
            roles = ", ".join(r.value for r in Role)
            message = f"--load {pair!r}: expected ROLE=SECONDS, ROLE one of {roles}"
            raise CommandError(message) from None
        if not times[Role(role.strip())] >= 0:
            raise CommandError(f"--load {pair!r}: seconds must be zero or more")
    return times


def _timeouts(text: str) -> list[float]:
    try:
        minutes = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CommandError(f"--timeouts {text!r}: expected minutes like 15,30") from None
    if any(not m > 0 for m in minutes):
        raise CommandError(f"--timeouts {text!r}: minutes must be positive")
    return minutes


def wake_costs(config: AppConfig, load: list[str], boot_s: float) -> WakeCosts:
    """The roles a plain voice request needs (``routing.default``) and what they take to load."""
    if boot_s < 0:
        raise CommandError("--boot-s must be zero or more")
    needs = frozenset(config.engines[name].role for name in config.routing.default)
    return WakeCosts(needs=needs, load_s=_load_times(load), host_boot_s=boot_s)


def run(args: argparse.Namespace, config: AppConfig) -> int:
    try:
        sessions = read_trace(args.trace)
    except TraceError as exc:
        raise CommandError(str(exc)) from None
    costs = wake_costs(config, args.load, args.boot_s)
    policies = standard_policies(config.hibernation, _timeouts(args.timeouts))
    tick_s = config.hibernation.tick_s
    results = [simulate(sessions, policy, costs, tick_s=tick_s) for policy in policies]
    report = build_report(sessions, results, costs, config)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def build_report(
    sessions: list[Session], results: list[SimResult], costs: WakeCosts, config: AppConfig
) -> dict[str, Any]:
    price = config.costs.usd_per_hour
    first = min(s.start for s in sessions)
    last = max(s.end for s in sessions)
    return {
        "trace": {"sessions": len(sessions), "start": first, "end": last},
        "profile": config.profile,
        "gpu_type": config.costs.gpu_type,
        "usd_per_hour": price,
        "needs": sorted(role.value for role in costs.needs),
        "load_s": {role.value: seconds for role, seconds in costs.load_s.items()},
        "host_boot_s": costs.host_boot_s,
        "tick_s": config.hibernation.tick_s,
        "policies": [
            {**r.to_dict(), "cost_usd": round(r.billed_s / 3600 * price, 2)} for r in results
        ],
    }


def _day(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M")


def format_report(report: dict[str, Any]) -> str:
    trace, rows = report["trace"], report["policies"]
    days = (trace["end"] - trace["start"]) / 86400
    loads = ", ".join(f"{role} {report['load_s'][role]:g} s" for role in report["needs"])
    lines = [
        f"trace    {trace['sessions']} sessions, {_day(trace['start'])} .. {_day(trace['end'])}"
        f" UTC ({days:.1f} days), active {rows[0]['active_hours']:.1f} h",
        f"profile  {report['profile']}: {report['gpu_type']} at ${report['usd_per_hour']:.2f}/h",
        f"wake     first request needs {loads or 'nothing'} (in parallel);"
        f" host boot {report['host_boot_s']:g} s; ladder tick {report['tick_s']:g} s",
        "",
        f"{'policy':<28} {'billed h':>9} {'cost $':>9} {'credits x':>9}"
        f"  {'wakes from warm/cool/cold/dormant':>33}  {'waited':>6}"
        f"  {'wait p50':>8} {'p99':>6} {'max':>6}",
    ]
    for row in rows:
        multiplier = row["credit_multiplier"]
        times = "-" if multiplier is None else f"{multiplier:.2f}"
        wakes = "/".join(str(row["wakes"].get(state, 0)) for state in WAKE_STATES)
        wait = row["wait_s"]
        lines.append(
            f"{row['policy']:<28} {row['billed_hours']:>9.1f} {row['cost_usd']:>9.2f}"
            f" {times:>9}  {wakes:>33}  {row['sessions_waiting']:>6}"
            f"  {wait['p50']:>8.1f} {wait['p99']:>6.1f} {wait['max']:>6.1f}"
        )
    lines.append("")
    lines.append(
        "credits x: always-on hours / billed hours. waited: sessions whose first request waited;"
        " wait: seconds it waited (host boot, then the loads it needs in parallel)."
    )
    return "\n".join(lines)
