"""The lines ``status`` prints for a gateway: its GPU host's state and ETA, and what it costs.

Reads only the documented fields of ``GET /v1/host`` (state, since, eta_s, progress, instance,
last_failure, retry_at, cause) and the ledger of ``GET /v1/host/ledger``. Times are measured
against the gateway's ``now`` (in the ledger), so a skewed local clock does not shift them.
"""

from __future__ import annotations

from typing import Any

from console.format import days, duration, usd, when


def _bill(name: str, bill: dict[str, Any]) -> str:
    starts = f"{bill['starts']} start{'' if bill['starts'] == 1 else 's'}"
    if bill["failed_starts"]:
        starts += f", {bill['failed_starts']} failed"
    return (
        f"{name:<6} {bill['host_hours']:.2f} h host {usd(bill['host_usd'])}"
        f" + {bill['gateway_hours']:.1f} h gateway {usd(bill['gateway_usd'])}"
        f" = {usd(bill['total_usd'])} ({starts})"
    )


def _eta(host: dict[str, Any], starts: dict[str, Any]) -> str:
    p50, p95 = starts["p50_s"], starts["p95_s"]
    measured = (
        f"a start takes {duration(p50)} (p50), {duration(p95)} (p95) over {starts['measured']}"
        if p50 is not None
        else "no start measured yet"
    )
    if host["state"] in ("ready", "draining"):
        return f"ready now; {measured}"
    if host["eta_s"] is None:
        return measured
    progress = round(100 * host["progress"])
    return f"ready in about {duration(host['eta_s'])} ({progress} %); {measured}"


def describe_gateway(host: dict[str, Any], ledger: dict[str, Any]) -> str:
    now = ledger["now"]
    where = f", {host['instance']}" if host.get("instance") else ""
    lines = [
        f"gateway  host {host['state']} for {duration(now - host['since'])}"
        f" (since {when(host['since'])}){where}",
        f"         {host['cause']}",
        f"eta      {_eta(host, ledger['start_to_ready'])}",
    ]
    if host.get("last_failure"):
        failure = f"failure  {host['last_failure']}"
        if host.get("retry_at") is not None:
            failure += f" (next try in {duration(host['retry_at'] - now)})"
        lines.append(failure)
    lines.append(f"billed   {_bill('today', ledger['today'])}")
    lines.append(f"         {_bill('month', ledger['month'])}")
    credits = ledger["credits"]
    line = (
        f"credits  {usd(credits['remaining_usd'])} left of {usd(credits['grant_usd'])},"
        f" burn {usd(credits['burn_usd_per_day'])}/day, runway {days(credits['runway_days'])}"
    )
    if credits["runs_out_at"] is not None:
        line += f" -> runs out {when(credits['runs_out_at'])} ({credits['limited_by']})"
    lines.append(line)
    return "\n".join(lines)
