"""The simulator's report: a usage trace replayed under the standard policies, as data and table.

What ``python -m orchestrator simulate`` prints and the console's Credits page shows for an
upload, built by the same functions so the two never disagree. Replaying is CPU work: async
callers run it in a thread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from orchestrator.config import AppConfig
from orchestrator.credits.simulator import (
    DEFAULT_BOOT_S,
    DEFAULT_LOAD_S,
    Session,
    SimResult,
    WakeCosts,
    simulate,
    standard_policies,
)
from services.base import Role

WAKE_STATES = ("warm", "cool", "cold", "dormant")


def wake_costs(
    config: AppConfig,
    load_s: Mapping[Role, float] = DEFAULT_LOAD_S,
    boot_s: float = DEFAULT_BOOT_S,
) -> WakeCosts:
    """The roles a plain voice request needs (``routing.default``) and what they take to load."""
    needs = frozenset(config.engines[name].role for name in config.routing.default)
    return WakeCosts(needs=needs, load_s=dict(load_s), host_boot_s=boot_s)


def replay(
    sessions: list[Session], costs: WakeCosts, config: AppConfig, timeouts_min: Sequence[float]
) -> dict[str, Any]:
    """Replay ``sessions`` under our ladder, fixed-timeout shutdowns and always-on: the report."""
    policies = standard_policies(config.hibernation, list(timeouts_min))
    tick_s = config.hibernation.tick_s
    results = [simulate(sessions, policy, costs, tick_s=tick_s) for policy in policies]
    return build_report(sessions, results, costs, config)


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
    """``build_report``'s data as the table ``simulate`` prints."""
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
