"""What the front door (proxy, holds, host routes) needs from the host controller.

The routes depend on this protocol, not on the controller, so they are tested with a scripted
gate and the controller with a scripted provider.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Literal, Protocol

from orchestrator.core.events import Subscription
from orchestrator.gateway.lifecycle import HostSnapshot

UseKind = Literal["request", "session"]


class HostGate(Protocol):
    host_key: str
    """The key the gateway sends to the host (``Authorization: Bearer``), not the client's."""

    def snapshot(self) -> HostSnapshot: ...

    async def ready_url(self, timeout_s: float) -> str:
        """The host's base URL once it is ready, starting it if it is not; waits up to
        ``timeout_s``. ``HostWaking`` (state and ETA) when that is not enough,
        ``HostStartFailed`` when the start failed and the backoff has not run out."""
        ...

    def use(self, kind: UseKind) -> AbstractContextManager[None]:
        """Hold the host up while a request or session runs: counted as activity when it
        starts and ends; the host is never stopped while one is open."""
        ...

    def host_lost(self, reason: str) -> None:
        """The proxy saw the host fail under an open request or session: look now."""
        ...

    async def wake(self, cause: str) -> HostSnapshot:
        """Start the host if it is not up or starting (idempotent)."""
        ...

    async def stop(self, cause: str) -> HostSnapshot:
        """Stop the host now (the operator's button); open sessions end."""
        ...

    def subscribe(self) -> Subscription:
        """Every transition as a ``host`` event carrying ``HostSnapshot.to_json()``."""
        ...


class Bridge(Protocol):
    """The bridge as the front door sees it (``bridge.py``): a server on CPU engines that
    answers while the host wakes."""

    after_s: float
    """A REST request still waiting for the host this long is served by the bridge."""

    def url(self) -> str | None:
        """Its base URL while it is ready to serve; None while it starts or is down."""
        ...
