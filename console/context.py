"""What the console's handlers share: typed app and request keys, and the audit helper."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import jinja2
from aiohttp import web

from console.audit import AuditEntry, AuditLog
from console.history import History
from console.history_store import HistoryStore
from console.password import PasswordCheck
from console.session import RevokedSessions, Session, SessionSigner
from orchestrator.app.runtime import RUNTIME

log = logging.getLogger("console.audit")
USER = "admin"


@dataclass(frozen=True)
class Identity:
    """Who a request is: the console user, by session cookie or by HTTP Basic (the CLI)."""

    via: str  # "session" or "basic"
    session: Session | None = None
    actor: str = USER


@dataclass
class LoginThrottle:
    """Failed sign-ins per address; past ``limit`` in ``window_s`` the address waits."""

    limit: int = 10
    window_s: float = 900.0
    failures: dict[str, list[float]] = field(default_factory=dict)

    def retry_after(self, remote: str, now: float) -> float:
        recent = [t for t in self.failures.get(remote, []) if now - t < self.window_s]
        self.failures[remote] = recent
        return self.window_s - (now - recent[0]) if len(recent) >= self.limit else 0.0

    def failed(self, remote: str, now: float) -> None:
        self.failures.setdefault(remote, []).append(now)
        if len(self.failures) > 1000:  # many addresses: forget the ones past the window
            window = self.window_s
            self.failures = {
                who: times for who, times in self.failures.items() if now - times[-1] < window
            }

    def succeeded(self, remote: str) -> None:
        self.failures.pop(remote, None)


class Stream(Protocol):
    """An open event stream (pages, process logs): ``close()`` ends it from outside."""

    def close(self) -> None: ...


@dataclass
class Console:
    templates: jinja2.Environment
    passwords: PasswordCheck
    signer: SessionSigner
    revoked: RevokedSessions
    audit: AuditLog
    overrides_path: Path
    clock: Callable[[], float] = time.time
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    streams: weakref.WeakSet[Stream] = field(default_factory=weakref.WeakSet)
    history: History = field(default_factory=History)
    history_store: HistoryStore | None = None  # None: the chart history lives in memory only
    # Believe X-Forwarded-Proto/-For (a TLS proxy in front): only when the operator says so.
    trust_proxy: bool = False

    def close(self) -> None:
        self.audit.close()
        self.revoked.close()
        if self.history_store is not None:
            self.history_store.close()


CONSOLE = web.AppKey("console", Console)
IDENTITY = web.RequestKey("console_identity", Identity)


def remote_of(request: web.Request) -> str:
    return request.remote or "?"


async def record(
    request: web.Request,
    action: str,
    *,
    target: str = "",
    ok: bool = True,
    error: str = "",
    identity: Identity | None = None,
    **details: Any,
) -> AuditEntry:
    """Write one audit entry, log it, and publish it on the bus for open consoles."""
    console = request.app[CONSOLE]
    who = identity or request.get(IDENTITY) or Identity(via="none", actor="-")
    entry = AuditEntry(
        at=console.clock(),
        actor=who.actor,
        via=who.via,
        remote=remote_of(request),
        action=action,
        target=target,
        details=details,
        ok=ok,
        error=error,
    )
    entry = await asyncio.to_thread(console.audit.add, entry)
    log.info(
        "operator %s %s%s from %s via %s: %s%s",
        entry.actor,
        action,
        f" {target}" if target else "",
        entry.remote,
        entry.via,
        details,
        "" if ok else f" FAILED: {error}",
    )
    request.app[RUNTIME].bus.publish("audit", **entry.to_dict())
    return entry
