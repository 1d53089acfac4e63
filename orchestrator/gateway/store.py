"""The gateway's durable memory: every host transition, and how long each start took.

``<state.dir>/gateway.db`` (SQLite, WAL, mode 0600). The transitions are the host's history for
the console and what the ledger bills; the start durations give the ETA announced to the app.
Calls block briefly on disk; the controller runs them in a thread.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core.store import open_database

DB_NAME = "gateway.db"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS host_transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    cause TEXT NOT NULL,
    instance TEXT NOT NULL,
    power TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS host_transitions_at ON host_transitions (at);
CREATE TABLE IF NOT EXISTS visits (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    start REAL NOT NULL,
    end REAL NOT NULL,
    hint INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS visits_start ON visits (start);
CREATE TABLE IF NOT EXISTS host_starts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    seconds REAL NOT NULL,
    instance TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class HostTransition:
    at: float
    source: str
    target: str
    cause: str
    instance: str
    power: str  # what the provider said of the machine then: running, stopped...


class GatewayStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = open_database(path, _SCHEMA)

    @classmethod
    def in_dir(cls, state_dir: Path) -> GatewayStore:
        return cls(state_dir / DB_NAME)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add_transition(self, record: HostTransition) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO host_transitions (at, source, target, cause, instance, power)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    record.at,
                    record.source,
                    record.target,
                    record.cause,
                    record.instance,
                    record.power,
                ),
            )

    def transitions(self, *, since: float = 0.0, limit: int | None = 1000) -> list[HostTransition]:
        """The latest ``limit`` transitions (None: all) at or after ``since``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT at, source, target, cause, instance, power FROM host_transitions"
                " WHERE at >= ? ORDER BY id DESC LIMIT ?",
                (since, -1 if limit is None else limit),  # SQLite: LIMIT -1 is no limit
            ).fetchall()
        return [HostTransition(*row) for row in reversed(rows)]

    def last_transition(self) -> HostTransition | None:
        found = self.transitions(limit=1)
        return found[0] if found else None

    def add_visit(self, start: float, end: float, *, hint: bool = False) -> None:
        """A session (start, end), or the app's wake hint (``hint``, end = start): what the
        learned pre-warm (``orchestrator/credits/prewarm.py``) learns from."""
        with self._lock:
            self._db.execute(
                "INSERT INTO visits (start, end, hint) VALUES (?, ?, ?)", (start, end, int(hint))
            )

    def visits(self, *, since: float = 0.0) -> list[tuple[float, float, bool]]:
        """(start, end, hint) of every visit that started at or after ``since``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT start, end, hint FROM visits WHERE start >= ? ORDER BY start", (since,)
            ).fetchall()
        return [(row[0], row[1], bool(row[2])) for row in rows]

    def add_start(self, at: float, seconds: float, instance: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO host_starts (at, seconds, instance) VALUES (?, ?, ?)",
                (at, seconds, instance),
            )

    def start_durations(self, limit: int = 50) -> list[float]:
        """The last ``limit`` start-to-ready durations, in seconds."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seconds FROM host_starts ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [row[0] for row in rows]
