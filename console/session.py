"""Signed session cookies, their CSRF tokens, and the sessions signed out before they expired.

The cookie is ``<payload>.<signature>``: the payload is URL-safe base64 of
``{"sid": random, "iat": issued, "exp": expires}`` and the signature an HMAC-SHA256 of it with
a key kept in ``<state.dir>/console_session_key`` (random, mode 0600; delete it to sign every
session out). Nothing secret rides in the cookie. A session's CSRF token is derived from its
id with the same key, so it needs no storage; pages carry it and every state-changing request
sends it back (header ``X-CSRF-Token``, or the ``csrf_token`` form field).

A **device cookie** (``vo_console_device``, ``<id>.<signature>``, same key) is handed out at a
successful sign-in and outlives the session: it tells the sign-in throttle that this client has
signed in before, so its failures are counted apart from everyone else's (``console.throttle``).
The CLI, which can read the key on the host, mints its own (``cli``).

Signing out records the session id until its expiry in table ``console_revoked`` of the
orchestrator's SQLite file, so a copied cookie stays dead across restarts.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from console.password import b64 as _b64
from console.password import unb64 as _unb64
from orchestrator.config.secrets import read_private_file
from orchestrator.core.store import open_database

COOKIE = "vo_console"
TTL_S = 12 * 3600.0
DEVICE_COOKIE = "vo_console_device"
DEVICE_TTL_S = 180 * 86400.0
KEY_FILE = "console_session_key"


def load_or_create_key(path: Path) -> bytes:
    """The signing key: read (refusing a file others can read) or created on first start."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            pass
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(secrets.token_urlsafe(48) + "\n")
    return read_private_file(path).encode()


@dataclass(frozen=True)
class Session:
    sid: str
    issued_at: float
    expires_at: float


class SessionSigner:
    def __init__(self, key: bytes, *, ttl_s: float = TTL_S, clock: Callable[[], float]) -> None:
        self._key = key
        self.ttl_s = ttl_s
        self._clock = clock

    def _sign(self, message: bytes, purpose: bytes) -> bytes:
        return hmac.new(self._key, purpose + b"|" + message, hashlib.sha256).digest()

    def _seal(self, payload: bytes, purpose: bytes) -> str:
        return f"{_b64(payload)}.{_b64(self._sign(payload, purpose))}"

    def _open(self, cookie: str, purpose: bytes) -> bytes | None:
        """The payload of a sealed cookie, or None when it is forged or malformed."""
        encoded, _, signature = cookie.partition(".")
        try:
            payload, given = _unb64(encoded), _unb64(signature)
        except (binascii.Error, ValueError):
            return None
        return payload if hmac.compare_digest(given, self._sign(payload, purpose)) else None

    def issue(self) -> tuple[str, Session]:
        now = self._clock()
        session = Session(secrets.token_urlsafe(18), now, now + self.ttl_s)
        payload = json.dumps(
            {"sid": session.sid, "iat": session.issued_at, "exp": session.expires_at},
            separators=(",", ":"),
        ).encode()
        return self._seal(payload, b"session"), session

    def issue_device(self, device_id: str | None = None) -> str:
        """A device cookie for a new device (or the one named, such as ``cli``)."""
        return self._seal((device_id or secrets.token_urlsafe(12)).encode(), b"device")

    def device(self, cookie: str) -> str | None:
        """The device id a device cookie carries, or None when it is forged or malformed."""
        payload = self._open(cookie, b"device")
        try:
            return payload.decode() if payload else None
        except UnicodeDecodeError:
            return None

    def verify(self, cookie: str) -> Session | None:
        """The session a cookie carries, or None when it is forged, malformed or expired."""
        payload = self._open(cookie, b"session")
        if payload is None:
            return None
        try:
            data = json.loads(payload)
            session = Session(str(data["sid"]), float(data["iat"]), float(data["exp"]))
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires_at > self._clock() else None

    def csrf_token(self, session: Session) -> str:
        return _b64(self._sign(session.sid.encode(), b"csrf"))

    def csrf_valid(self, session: Session, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.csrf_token(session).encode())


_SCHEMA = """
CREATE TABLE IF NOT EXISTS console_revoked (sid TEXT PRIMARY KEY, expires_at REAL NOT NULL);
"""


class RevokedSessions:
    """Signed-out session ids, in memory and in SQLite; blocking calls (use a thread)."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = open_database(path, _SCHEMA)
        self._ids = {row[0] for row in self._db.execute("SELECT sid FROM console_revoked")}

    def __contains__(self, sid: str) -> bool:
        return sid in self._ids

    def revoke(self, session: Session, now: float) -> None:
        self._ids.add(session.sid)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO console_revoked (sid, expires_at) VALUES (?, ?)",
                (session.sid, session.expires_at),
            )
            expired = self._db.execute(
                "SELECT sid FROM console_revoked WHERE expires_at < ?", (now,)
            ).fetchall()
            self._db.execute("DELETE FROM console_revoked WHERE expires_at < ?", (now,))
        self._ids.difference_update(row[0] for row in expired)

    def close(self) -> None:
        with self._lock:
            self._db.close()
