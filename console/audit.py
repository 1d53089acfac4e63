"""The operator audit log: every sign-in, sign-out and action, kept in the orchestrator's SQLite.

Table ``console_audit`` sits in ``<state.dir>/orchestrator.db`` beside the transitions and the
ledger, through its own connection (WAL). Each entry says when, who (the one console user and
how they proved it: ``session`` or ``basic``), from where, what, on what, with which details,
and whether it worked. Calls block briefly on disk I/O: async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from orchestrator.core.store import open_database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS console_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    via TEXT NOT NULL,
    remote TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    details TEXT NOT NULL,
    ok INTEGER NOT NULL,
    error TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS console_audit_at ON console_audit (at);
"""


@dataclass(frozen=True)
class AuditEntry:
    at: float
    actor: str
    via: str
    remote: str
    action: str
    target: str = ""
    details: dict[str, Any] | None = None
    ok: bool = True
    error: str = ""
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "details": self.details or {}}


class AuditLog:
    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = open_database(path, _SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, entry: AuditEntry) -> AuditEntry:
        """Store one entry; returns it with its id."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO console_audit (at, actor, via, remote, action, target, details,"
                " ok, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.at,
                    entry.actor,
                    entry.via,
                    entry.remote,
                    entry.action,
                    entry.target,
                    json.dumps(entry.details or {}, default=str),
                    int(entry.ok),
                    entry.error,
                ),
            )
        return AuditEntry(**{**asdict(entry), "id": cursor.lastrowid})

    def recent(self, limit: int = 100, *, before_id: int | None = None) -> list[AuditEntry]:
        """The latest ``limit`` entries (older than ``before_id`` when given), newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, at, actor, via, remote, action, target, details, ok, error"
                " FROM console_audit WHERE id < ? ORDER BY id DESC LIMIT ?",
                (before_id if before_id is not None else 2**62, limit),
            ).fetchall()
        return [
            AuditEntry(
                id=row[0],
                at=row[1],
                actor=row[2],
                via=row[3],
                remote=row[4],
                action=row[5],
                target=row[6],
                details=json.loads(row[7]),
                ok=bool(row[8]),
                error=row[9],
            )
            for row in rows
        ]
