"""What the console's handlers share: typed app and request keys, and the audit helper.

Nothing here knows the runtime: the gateway's console (``orchestrator.gateway.console``) signs
in, guards writes and audits with the same modules on a machine without one.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import jinja2
from aiohttp import web

from console.audit import AuditEntry, AuditLog
from console.history import History
from console.history_store import HistoryStore
from console.password import PasswordCheck
from console.session import RevokedSessions, Session, SessionSigner
from console.throttle import LoginThrottle
from orchestrator.core.events import EventBus

log = logging.getLogger("console.audit")
USER = "admin"


@dataclass(frozen=True)
class Identity:
    """Who a request is: the console user, by session cookie or by HTTP Basic (the CLI)."""

    via: str  # "session" or "basic"
    session: Session | None = None
    actor: str = USER


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
    throttle: LoginThrottle
    origins: frozenset[str]  # what a state-changing request's Origin may be (console.origin)
    clock: Callable[[], float] = time.time
    bus: EventBus | None = None  # where audit entries are published for open pages; None: not
    streams: weakref.WeakSet[Stream] = field(default_factory=weakref.WeakSet)
    history: History = field(default_factory=History)
    history_store: HistoryStore | None = None  # None: the chart history lives in memory only
    # Believe X-Forwarded-Proto/-For (a TLS proxy in front): only when the operator says so.
    trust_proxy: bool = False

    def close(self) -> None:
        self.audit.close()
        self.revoked.close()
        self.throttle.close()
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
    if console.bus is not None:
        console.bus.publish("audit", **entry.to_dict())
    return entry
