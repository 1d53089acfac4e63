"""Fallback chains: the engines that can serve one role, best first.

A session leases the best engine of each chain that comes up. When it fails (a load error, a
call error), the chain switches to the next one. An engine that failed *transiently* (its error
says retrying may help: still loading, no VRAM yet, the server down for now) is probed again
later, and the chain switches back once it works; one that failed *permanently* (missing or
broken weights, a rejected key) is not retried for the rest of the chain's life: the next
session's chain starts from the top again. The session decides *when* to switch (never in the
middle of a sentence); every switch is reported through ``on_switch``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack

from orchestrator.fleet.fleet import Fleet
from services.base import Engine
from services.errors import EngineError

log = logging.getLogger(__name__)

OnSwitch = Callable[[str, str | None, str, str], Awaitable[None]]  # role, from, to, why


class NoEngine(EngineError):
    code = "no_engine_available"
    transient = True


class RoleChain:
    def __init__(
        self,
        role: str,
        names: Sequence[str],
        fleet: Fleet,
        *,
        timeout_s: float,
        on_switch: OnSwitch,
        on_waking: Callable[[list[str]], object] | None = None,
    ) -> None:
        self.role = role
        self.names = list(dict.fromkeys(names))
        self.current: str | None = None
        self.failed: dict[str, str] = {}
        self.errors: dict[str, EngineError] = {}  # each failed engine's last error, as raised
        self.permanent: set[str] = set()  # failed engines that probing would not bring back
        self._fleet = fleet
        self._timeout_s = timeout_s
        self._on_switch = on_switch
        self._on_waking = on_waking
        self._engines: dict[str, Engine] = {}
        self._stack = AsyncExitStack()

    @property
    def engine(self) -> Engine:
        if self.current is None:
            raise NoEngine(f"no {self.role} engine is available", engine=self.role)
        return self._engines[self.current]

    async def open(self) -> None:
        """Lease the best engine that comes up; raise if none does."""
        for name in self.names:
            if await self._take(name):
                if name != self.names[0]:
                    await self._on_switch(
                        self.role, self.names[0], name, self.failed[self.names[0]]
                    )
                self.current = name
                return
        reasons = "; ".join(f"{n}: {why}" for n, why in self.failed.items())
        raise NoEngine(f"no {self.role} engine could start ({reasons})", engine=self.role)

    async def fail(self, reason: str, *, transient: bool = True) -> bool:
        """The current engine failed (``transient``: as its error says): switch to the next that
        works. False when none does."""
        broken = self.current
        if broken is None:
            return False
        self._failed(broken, reason, transient)
        for name in self.names[self.names.index(broken) + 1 :]:
            if name in self._engines or await self._take(name):
                self.current = name
                await self._on_switch(self.role, broken, name, reason)
                return True
        self.current = None
        return False

    async def probe(self) -> None:
        """Try engines better than the current one that failed transiently again; switch back
        to one that works. Permanent failures stay failed (retrying would not help)."""
        limit = self.names.index(self.current) if self.current in self.names else len(self.names)
        for name in self.names[:limit]:
            if name not in self.failed or name in self.permanent:
                continue
            self._engines.pop(name, None)
            if await self._take(name):
                previous, self.current = self.current, name
                del self.failed[name]
                self.permanent.discard(name)
                await self._on_switch(self.role, previous, name, "recovered")
                return

    async def _take(self, name: str) -> bool:
        try:
            engines = await self._stack.enter_async_context(
                self._fleet.lease([name], timeout_s=self._timeout_s, on_waking=self._on_waking)
            )
        except EngineError as exc:
            self._failed(name, str(exc), exc.transient)
            self.errors[name] = exc
            log.warning("%s engine %s unavailable: %s", self.role, name, exc)
            return False
        self._engines[name] = engines[name]
        return True

    def _failed(self, name: str, reason: str, transient: bool) -> None:
        self.failed[name] = reason
        if transient:
            self.permanent.discard(name)
        else:
            self.permanent.add(name)

    async def close(self) -> None:
        await self._stack.aclose()
