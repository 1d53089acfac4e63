"""Failed console sign-ins, counted per user name and source, kept in the state database.

Why not per address: every console client is on loopback (the browser through an SSH tunnel,
the CLI, any other local process), so an address is no identity; throttling it let any local
process lock the operator out with ten bad ``Authorization`` headers.

A **source** is the most specific thing the console can tell about who is trying:
  ``device:<id>``   a browser (or the CLI) carrying a device cookie: signed with the console's
                    session key and handed out at a successful sign-in, so only a client that
                    once knew the password (or can read the key on the host) has one;
  ``address:<ip>``  anyone else, by the peer address (the proxy's ``X-Forwarded-For`` entry
                    when ``server.console_trust_proxy`` is set).
The User-Agent is not used: any client can copy it.

Failures are counted in a sliding window (15 min) under two bounds:
  (user, source)                   10  that user name from that source waits;
  (user, every ``address:``)      100  a guess spread over many addresses waits too, but only
                                       clients without a device cookie wait with it.
So a flood of bad attempts from a local process (``address:127.0.0.1``) locks out that user
name from addresses, never a trusted device, and never another user name. A success clears its
own (user, source) count. An operator on the host clears the rest with
``python -m orchestrator console unlock``.

Table ``console_login_failures`` in ``<state.dir>/orchestrator.db`` holds one row per failure,
so a restart forgets nothing; rows past the window are pruned on each failure, and past
``max_rows`` the oldest go (a flood of made-up user names cannot fill the disk). Calls block on
disk I/O: async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core.store import open_database

DEVICE = "device:"
ADDRESS = "address:"
MAX_NAME = 64

_SCHEMA = """
CREATE TABLE IF NOT EXISTS console_login_failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    source TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS console_login_failures_user ON console_login_failures (user, at);
"""


@dataclass(frozen=True)
class Cleared:
    """What ``unlock`` forgot: the failures of one user name from one source."""

    user: str
    source: str
    failures: int
    last_at: float


class LoginThrottle:
    def __init__(
        self,
        path: Path,
        *,
        limit: int = 10,
        untrusted_limit: int = 100,
        window_s: float = 900.0,
        max_rows: int = 10_000,
    ) -> None:
        self.limit, self.untrusted_limit, self.window_s = limit, untrusted_limit, window_s
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._db = open_database(path, _SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _wait(self, where: str, args: tuple[object, ...], bound: int, now: float) -> float:
        """Seconds until fewer than ``bound`` failures matching ``where`` are in the window."""
        row = self._db.execute(
            f"SELECT at FROM console_login_failures WHERE {where} AND at > ?"
            " ORDER BY at DESC LIMIT 1 OFFSET ?",
            (*args, now - self.window_s, bound - 1),
        ).fetchone()
        return 0.0 if row is None else max(0.0, self.window_s - (now - row[0]))

    def retry_after(self, user: str, source: str, now: float) -> float:
        """0 when ``user`` may try from ``source`` now, else the seconds to wait."""
        user = user[:MAX_NAME]
        with self._lock:
            wait = self._wait("user = ? AND source = ?", (user, source), self.limit, now)
            if not source.startswith(DEVICE):
                everywhere = (user, ADDRESS + "%")
                bound = self.untrusted_limit
                wait = max(wait, self._wait("user = ? AND source LIKE ?", everywhere, bound, now))
        return wait

    def failed(self, user: str, source: str, now: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO console_login_failures (user, source, at) VALUES (?, ?, ?)",
                (user[:MAX_NAME], source, now),
            )
            self._db.execute(
                "DELETE FROM console_login_failures WHERE at <= ? OR id <= ("
                "SELECT MAX(id) FROM console_login_failures) - ?",
                (now - self.window_s, self.max_rows),
            )

    def succeeded(self, user: str, source: str) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM console_login_failures WHERE user = ? AND source = ?",
                (user[:MAX_NAME], source),
            )

    def unlock(self, user: str | None = None) -> list[Cleared]:
        """Forget the failures (of ``user`` only, when given), ending its lock-outs; say which."""
        name = None if user is None else user[:MAX_NAME]
        with self._lock:
            rows = self._db.execute(
                "SELECT user, source, COUNT(*), MAX(at) FROM console_login_failures"
                " WHERE ? IS NULL OR user = ? GROUP BY user, source ORDER BY user, source",
                (name, name),
            ).fetchall()
            self._db.execute(
                "DELETE FROM console_login_failures WHERE ? IS NULL OR user = ?", (name, name)
            )
        return [Cleared(*row) for row in rows]
