"""The credit ledger's records: host power runs and heartbeats, beside the transition history.

It shares the orchestrator's SQLite file (WAL) through its own connection and its own table;
idle-state changes come from the ``transitions`` table that ``StateStore`` writes. A run is one
stretch the orchestrator saw the host up: ``host_on`` at start (or after a power-on), a
``heartbeat`` every ``heartbeat_s`` (an APScheduler job), ``host_off`` when DORMANT's host power
action succeeded. A run that stops without ``host_off`` (power cut, crash, kill) ends at its last
heartbeat, so time nobody watched is not billed. Calls block briefly on disk I/O; async callers
run them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from orchestrator.config import CostsConfig
from orchestrator.core.idle import IdleState
from orchestrator.core.store import TransitionRecord, open_database
from orchestrator.credits.runway import HostRun, StateChange, summarize

_SCHEMA = """
CREATE TABLE IF NOT EXISTS host_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at REAL NOT NULL,
    last_seen REAL NOT NULL,
    stopped_at REAL
);
CREATE INDEX IF NOT EXISTS host_runs_started ON host_runs (started_at);
"""
HEARTBEAT_S = 60.0
STALE_BEATS = 2.5  # a run whose last heartbeat is older than this many beats is over


class Ledger:
    def __init__(self, path: Path, costs: CostsConfig, *, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.costs = costs
        self.heartbeat_s = heartbeat_s
        self._lock = threading.Lock()
        self._db = open_database(path, _SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writes ----------------------------------------------------------------------------

    def host_on(self, at: float) -> None:
        """The host is up (orchestrator start, or a power-on it did itself): a new run begins.
        A run left open by a previous process stays open; it ends at its last heartbeat."""
        with self._lock:
            self._db.execute(
                "INSERT INTO host_runs (started_at, last_seen) VALUES (?, ?)", (at, at)
            )

    def heartbeat(self, at: float) -> None:
        """Still up. With no open run (after ``host_off`` that did not stop us) a new one begins:
        a process that can beat is on a host that bills."""
        with self._lock:
            open_run = self._open_run()
            if open_run is None:
                self._db.execute(
                    "INSERT INTO host_runs (started_at, last_seen) VALUES (?, ?)", (at, at)
                )
            else:
                self._db.execute("UPDATE host_runs SET last_seen = ? WHERE id = ?", (at, open_run))

    def host_off(self, at: float) -> None:
        with self._lock:
            open_run = self._open_run()
            if open_run is not None:
                self._db.execute(
                    "UPDATE host_runs SET last_seen = ?, stopped_at = ? WHERE id = ?",
                    (at, at, open_run),
                )

    def note_transition(self, record: TransitionRecord) -> None:
        """Record a host power-off that a transition did (action ``none`` powers nothing off)."""
        for action in record.actions:
            if (
                action.get("action") == "host_power_off"
                and action.get("ok")
                and action.get("target") != "none"
            ):
                self.host_off(record.at)
                return

    def _open_run(self) -> int | None:
        row = self._db.execute(
            "SELECT id, stopped_at FROM host_runs ORDER BY started_at DESC, id DESC LIMIT 1"
        ).fetchone()
        return int(row[0]) if row and row[1] is None else None

    # -- reads -----------------------------------------------------------------------------

    def runs(self) -> list[HostRun]:
        with self._lock:
            rows = self._db.execute(
                "SELECT started_at, last_seen, stopped_at FROM host_runs ORDER BY started_at, id"
            ).fetchall()
        return [HostRun(row[0], row[1], row[2]) for row in rows]

    def state_changes(self) -> tuple[IdleState, list[StateChange]]:
        """Every recorded idle-state change, and the state before the first one."""
        with self._lock:
            has_table = self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'transitions'"
            ).fetchone()
            rows = (
                self._db.execute(
                    "SELECT at, source, target FROM transitions ORDER BY id"
                ).fetchall()
                if has_table
                else []
            )
            saved = self._saved_state() if not rows and has_table else None
        initial = IdleState(rows[0][1]) if rows else saved or IdleState.ACTIVE
        return initial, [StateChange(row[0], IdleState(row[2])) for row in rows]

    def _saved_state(self) -> IdleState | None:
        row = self._db.execute("SELECT value FROM kv WHERE key = 'ladder'").fetchone()
        return IdleState(json.loads(row[0])["state"]) if row else None

    def summary(self, now: float) -> dict[str, Any]:
        """Time per state and power state, cost, credits left, burn and runway (JSON-able)."""
        initial, changes = self.state_changes()
        return summarize(
            changes,
            self.runs(),
            self.costs,
            now=now,
            stale_after_s=self.heartbeat_s * STALE_BEATS,
            initial_state=initial,
        )
