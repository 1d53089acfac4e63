"""Durable state in one SQLite file (WAL): the ladder, pins, and the transition history.

Calls block briefly on disk I/O; async callers run them with ``asyncio.to_thread``. One lock
serialises use of the connection across threads. The file (``<state.dir>/orchestrator.db``) also
holds the ledger and the console's audit log, revoked sessions and sign-in failures, so it and
its ``-wal``/``-shm`` companions are private to the owner (mode 0600), whatever the umask.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    cause TEXT NOT NULL,
    actions TEXT NOT NULL,
    memory_before TEXT NOT NULL,
    memory_after TEXT NOT NULL,
    seconds REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS transitions_at ON transitions (at);
"""
DB_NAME = "orchestrator.db"
PRIVATE = 0o600


@dataclass(frozen=True)
class TransitionRecord:
    at: float
    source: str
    target: str
    cause: str
    actions: list[dict[str, Any]]
    memory_before: dict[str, Any]
    memory_after: dict[str, Any]
    seconds: float


def state_database(state_dir: Path) -> Path:
    """Where the state database of a state directory is."""
    return state_dir / DB_NAME


def _make_private(path: Path) -> None:
    """Create ``path`` (and tighten an existing one and its WAL files) to mode 0600 before SQLite
    opens it: SQLite creates the ``-wal`` and ``-shm`` files with the database file's mode."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE))
    for each in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if each.stat().st_mode & 0o777 != PRIVATE:
                each.chmod(PRIVATE)
        except FileNotFoundError:
            pass


def open_database(path: Path, schema: str, *, timeout_s: float = 10.0) -> sqlite3.Connection:
    """One connection to the state database (WAL, autocommit, usable from worker threads under
    the caller's lock) with ``schema`` created if missing. Each table's owner opens its own.
    The file and its WAL companions are mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _make_private(path)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=timeout_s)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(schema)
    return db


class StateStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = open_database(path, _SCHEMA, timeout_s=5.0)  # sqlite3's default wait
        self._db.execute("PRAGMA synchronous=NORMAL")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO kv (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def add_transition(self, record: TransitionRecord) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO transitions (at, source, target, cause, actions, memory_before,"
                " memory_after, seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.at,
                    record.source,
                    record.target,
                    record.cause,
                    json.dumps(record.actions),
                    json.dumps(record.memory_before),
                    json.dumps(record.memory_after),
                    record.seconds,
                ),
            )

    def transitions(self, *, since: float = 0.0, limit: int = 500) -> list[TransitionRecord]:
        """The latest ``limit`` transitions at or after ``since``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT at, source, target, cause, actions, memory_before, memory_after, seconds"
                " FROM transitions WHERE at >= ? ORDER BY id DESC LIMIT ?",
                (since, limit),
            ).fetchall()
        return [
            TransitionRecord(
                at=row[0],
                source=row[1],
                target=row[2],
                cause=row[3],
                actions=json.loads(row[4]),
                memory_before=json.loads(row[5]),
                memory_after=json.loads(row[6]),
                seconds=row[7],
            )
            for row in reversed(rows)
        ]
