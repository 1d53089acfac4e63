"""The chart history on disk, so the overview's last hours survive a restart.

Table ``console_chart_points`` sits in ``<state.dir>/orchestrator.db`` beside the audit log,
through its own connection (WAL): at most one small row a minute, and rows older than the
history's window are pruned as new ones come. Calls block briefly on disk I/O: async callers
use ``asyncio.to_thread``.
"""

from __future__ import annotations

import json
import threading
from dataclasses import fields
from pathlib import Path

from console.history import Point
from orchestrator.core.store import open_database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS console_chart_points (
    at REAL PRIMARY KEY,
    point TEXT NOT NULL
);
"""
_FIELDS = {f.name for f in fields(Point)}


class HistoryStore:
    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = open_database(path, _SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def save(self, point: Point, *, keep_s: float) -> None:
        """Store one point and forget those older than ``keep_s`` before it."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO console_chart_points (at, point) VALUES (?, ?)",
                (point.at, json.dumps(point.to_dict())),
            )
            self._db.execute("DELETE FROM console_chart_points WHERE at < ?", (point.at - keep_s,))

    def since(self, at: float) -> list[Point]:
        """The points from ``at`` on, oldest first; rows this version cannot read are skipped."""
        with self._lock:
            rows = self._db.execute(
                "SELECT point FROM console_chart_points WHERE at >= ? ORDER BY at", (at,)
            ).fetchall()
        points = []
        for (text,) in rows:
            try:
                data = json.loads(text)
                points.append(Point(**{k: v for k, v in data.items() if k in _FIELDS}))
            except (ValueError, TypeError):
                continue
        return points
