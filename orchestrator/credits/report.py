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
from orchestrator.credits.gateway_sim import (
    DEFAULT_BRIDGE_S,
    DEFAULT_HINT_LEAD_S,
    DEFAULT_IDLE_STOPS_MIN,
    GatewayCosts,
    GatewaySimResult,
    gateway_policies,
    simulate_gateway,
)
from orchestrator.credits.simulator import (
    DEFAULT_BOOT_S,
    DEFAULT_LOAD_S,
    DEFAULT_RESUME_S,
    LONG_WAIT_S,
    Session,
    SimResult,
    WakeCosts,
    simulate,
    standard_policies,
)
from services.adapter_roles import PARKING_ADAPTERS
from services.base import Role

WAKE_STATES = ("warm", "cool", "cold", "dormant")


def wake_costs(
    config: AppConfig,
    load_s: Mapping[Role, float] = DEFAULT_LOAD_S,
    boot_s: float = DEFAULT_BOOT_S,
    resume_s: Mapping[Role, float] = DEFAULT_RESUME_S,
) -> WakeCosts:
    """The roles a plain voice request needs (``routing.default``), what they take to load, and
    to resume for those whose engine can park (the others are unloaded where a state parks)."""
    engines = [config.engines[name] for name in config.routing.default]
    needs = frozenset(engine.role for engine in engines)
    parking = {engine.role for engine in engines if engine.adapter in PARKING_ADAPTERS}
    resume = {role: resume_s[role] for role in parking if role in resume_s}
    return WakeCosts(needs=needs, load_s=dict(load_s), host_boot_s=boot_s, resume_s=resume)


def gateway_costs(config: AppConfig, hint_lead_s: float = DEFAULT_HINT_LEAD_S) -> GatewayCosts:
    """The gateway's side of the replay, from ``[gateway]``."""
    gateway = config.gateway
    return GatewayCosts(
        hint_lead_s=hint_lead_s,
        bridge_s=DEFAULT_BRIDGE_S,
        drain_s=gateway.drain_s,
        fallback_idle_s=gateway.stop_after_s,
        usd_per_hour=gateway.usd_per_hour,
    )


def replay(
    sessions: list[Session],
    costs: WakeCosts,
    config: AppConfig,
    timeouts_min: Sequence[float],
    *,
    hint_lead_s: float = DEFAULT_HINT_LEAD_S,
    idle_stops_min: Sequence[float] = DEFAULT_IDLE_STOPS_MIN,
) -> dict[str, Any]:
    """Replay ``sessions`` under our ladder, fixed-timeout shutdowns, always-on and the
    gateway's policies: the report."""
    policies = standard_policies(config.hibernation, list(timeouts_min))
    tick_s = config.hibernation.tick_s
    results = [simulate(sessions, policy, costs, tick_s=tick_s) for policy in policies]
    gateway = gateway_costs(config, hint_lead_s)
    gateway_results = [
        simulate_gateway(sessions, policy, costs, gateway)
        for policy in gateway_policies(config.gateway.prewarm, idle_stops_min)
    ]
    return build_report(sessions, results, costs, config, gateway_results, gateway)


def _today(row: dict[str, Any], price: float, billed_s: float) -> dict[str, Any]:
    """Today's policies in the keys every policy has (no gateway: no bridge, no VM)."""
    waits = row["wait_s"]
    return {
        **row,
        "cost_usd": round(billed_s / 3600 * price, 2),
        "bridged_sessions": 0,
        "first_answer_wait_s": waits,
        "gateway_usd": 0.0,
    }


def build_report(
    sessions: list[Session],
    results: list[SimResult],
    costs: WakeCosts,
    config: AppConfig,
    gateway_results: Sequence[GatewaySimResult] = (),
    gateway: GatewayCosts | None = None,
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
        "resume_s": {role.value: seconds for role, seconds in costs.resume_s.items()},
        "host_boot_s": costs.host_boot_s,
        "tick_s": config.hibernation.tick_s,
        "long_wait_s": LONG_WAIT_S,
        "hint_lead_s": None if gateway is None else gateway.hint_lead_s,
        "bridge_first_answer_s": None if gateway is None else gateway.bridge_s,
        "policies": [_today(r.to_dict(), price, r.billed_s) for r in results]
        + [r.to_dict(price) for r in gateway_results],
    }


def _day(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M")


def format_report(report: dict[str, Any]) -> str:
    """``build_report``'s data as the table ``simulate`` prints."""
    trace, rows = report["trace"], report["policies"]
    days = (trace["end"] - trace["start"]) / 86400
    loads = ", ".join(f"{role} {report['load_s'][role]:g} s" for role in report["needs"])
    resumes = report.get("resume_s") or {}
    if resumes:
        loads += "; parked: " + ", ".join(f"{r} resumes in {s:g} s" for r, s in resumes.items())
    lines = [
        f"trace    {trace['sessions']} sessions, {_day(trace['start'])} .. {_day(trace['end'])}"
        f" UTC ({days:.1f} days), active {rows[0]['active_hours']:.1f} h",
        f"profile  {report['profile']}: {report['gpu_type']} at ${report['usd_per_hour']:.2f}/h",
        f"wake     first request needs {loads or 'nothing'} (in parallel);"
        f" host boot {report['host_boot_s']:g} s; ladder tick {report['tick_s']:g} s",
        "",
        f"{'policy':<33} {'billed h':>9} {'cost $':>8} {'+ gw $':>8} {'credits x':>9}"
        f"  {'wakes w/c/c/d':>13} {'waited':>6} {'long':>5} {'bridged':>7}"
        f"  {'wait p50':>8} {'p99':>6} {'max':>6}",
    ]
    for row in rows:
        multiplier = row["credit_multiplier"]
        times = "-" if multiplier is None else f"{multiplier:.2f}"
        wakes = "/".join(str(row["wakes"].get(state, 0)) for state in WAKE_STATES)
        wait = row["first_answer_wait_s"]
        lines.append(
            f"{row['policy']:<33} {row['billed_hours']:>9.1f} {row['cost_usd']:>8.2f}"
            f" {row['cost_usd'] + row['gateway_usd']:>8.2f} {times:>9}"
            f"  {wakes if row['wakes'] else '-':>13} {row['sessions_waiting']:>6}"
            f" {row['long_waits']:>5} {row['bridged_sessions']:>7}"
            f"  {wait['p50']:>8.1f} {wait['p99']:>6.1f} {wait['max']:>6.1f}"
        )
    lines.append("")
    lines.append(
        "+ gw $: the host's cost plus the gateway VM's. credits x: always-on hours / billed"
        " hours. waited: sessions whose first request waited;"
        f" long: waited over {report['long_wait_s']:g} s; wait: seconds from the first request"
        " to its first answer (host boot, then the loads it needs in parallel)."
    )
    gateway = [row["gateway_usd"] for row in rows if row["policy"].startswith("gateway")]
    if gateway:
        lines.append(
            f"gateway: the app's wake hint comes {report['hint_lead_s']:g} s before its first"
            f" request; + bridge: a booting host's first answer comes after"
            f" {report['bridge_first_answer_s']:g} s (bridged); the gateway VM costs"
            f" ${gateway[0]:.2f} over the trace ([gateway] usd_per_hour)."
        )
    return "\n".join(lines)
