"""The Credits page's numbers: billed hours and cost per day, and the simulator on an upload.

Days are UTC days; each is swept with the ledger's own arithmetic (``orchestrator.credits.runway``),
so the bars add up to the totals the ledger reports. The simulator is the CLI's ``simulate``
(``orchestrator.credits.report``) on a trace the operator uploads (CSV or JSONL, as
``orchestrator.credits.traces`` reads them). Both are blocking (SQLite, CPU): callers run them
with ``asyncio.to_thread``.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from orchestrator.config import AppConfig
from orchestrator.core.idle import ORDER
from orchestrator.credits.ledger import STALE_BEATS, Ledger
from orchestrator.credits.report import replay, wake_costs
from orchestrator.credits.runway import DAY_S, HOUR_S, day_start, power_changes, usage
from orchestrator.credits.traces import JSONL_SUFFIXES, TraceError, read_trace
from services.errors import VoiceOrchestratorError

MAX_DAYS = 90
MIN_DAYS = 7
MAX_TRACE_BYTES = 5_000_000


def daily(ledger: Ledger, now: float, days: int = 14) -> dict[str, Any]:
    """Billed hours per idle state and cost for each of the last ``days`` UTC days (fewer,
    down to a week, when the ledger's history is shorter)."""
    initial, changes = ledger.state_changes()
    runs = ledger.runs()
    power = power_changes(runs, now, ledger.heartbeat_s * STALE_BEATS)
    today = datetime.fromtimestamp(now, UTC).date()
    if runs:  # no empty bars from before the first run, beyond a week's frame
        first = datetime.fromtimestamp(min(run.started_at for run in runs), UTC).date()
        days = min(days, max(MIN_DAYS, (today - first).days + 1))
    days = max(1, min(days, MAX_DAYS))
    price = ledger.costs.usd_per_hour
    rows = []
    for offset in range(days - 1, -1, -1):
        day = today - timedelta(days=offset)
        start = day_start(day)
        used = usage(changes, power, start, min(start + DAY_S, now), initial_state=initial)
        rows.append(
            {
                "day": day.isoformat(),
                "hours_by_state": {
                    state.value: round(used.powered_s[state] / HOUR_S, 3) for state in ORDER
                },
                "billed_hours": round(used.billed_hours, 3),
                "cost_usd": round(used.cost_usd(price), 2),
            }
        )
    return {"usd_per_hour": price, "days": rows}


def cost_by_state(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Powered hours and their cost per idle state, from a ledger summary."""
    price = summary["usd_per_hour"]
    return [
        {
            "state": state,
            "hours": hours["powered"],
            "cost_usd": round(hours["powered"] * price, 2),
            "unpowered_hours": hours["unpowered"],
        }
        for state, hours in summary["hours_by_state"].items()
    ]


class SimulationError(VoiceOrchestratorError, ValueError):
    """An upload the simulator cannot use, worded for the operator."""

    code = "invalid_simulation"
    status = 400


def parse_timeouts(text: str) -> list[float]:
    try:
        minutes = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SimulationError(f"timeouts {text!r}: expected minutes like 15,30") from None
    if any(not 0 < m <= 24 * 60 for m in minutes) or len(minutes) > 6:
        raise SimulationError("timeouts: up to 6 values, each in (0, 1440] minutes")
    return minutes


def run_simulation(
    config: AppConfig, trace: str, filename: str, timeouts: list[float]
) -> dict[str, Any]:
    """Replay an uploaded trace under the standard policies; the CLI's report as JSON."""
    if len(trace.encode()) > MAX_TRACE_BYTES:
        raise SimulationError(f"trace is larger than {MAX_TRACE_BYTES // 1_000_000} MB")
    name = Path(filename or "trace.csv").name
    suffix = ".jsonl" if name.lower().endswith(JSONL_SUFFIXES) else ".csv"
    with tempfile.TemporaryDirectory(prefix="vo-trace-") as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_text(trace, encoding="utf-8")
        try:
            sessions = read_trace(path)
        except TraceError as exc:
            raise SimulationError(str(exc).replace(str(path), name)) from None
    return {"file": name, **replay(sessions, wake_costs(config), config, timeouts)}
