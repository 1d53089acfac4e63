"""When to stop the host: the gateway sees every request and session, so it decides.

Pure: the inputs are the state, what is open and when the host was last used; the controller
calls ``decide`` on every tick and does what it says. Never stops while anything is open, nor
before ``hold_until`` (a planned pre-warm or keep-on window: the host is to be up then).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from orchestrator.gateway.lifecycle import HostState


class Decision(StrEnum):
    KEEP = "keep"
    DRAIN = "drain"  # READY -> DRAINING
    UNDRAIN = "undrain"  # DRAINING -> READY: it was used again
    STOP = "stop"  # DRAINING -> STOPPING


@dataclass(frozen=True)
class Usage:
    open_uses: int  # requests in flight and sessions open
    last_used_at: float  # when the last one started or ended


def decide(
    state: HostState,
    usage: Usage,
    now: float,
    *,
    draining_since: float | None,
    stop_after_s: float,
    drain_s: float,
    hold_until: float | None = None,
) -> Decision:
    busy = usage.open_uses > 0
    held = hold_until is not None and now < hold_until
    if state is HostState.READY:
        if not busy and not held and now - usage.last_used_at >= stop_after_s:
            return Decision.DRAIN
        return Decision.KEEP
    if state is HostState.DRAINING:
        used_again = draining_since is not None and usage.last_used_at > draining_since
        if busy or held or used_again:
            return Decision.UNDRAIN
        if draining_since is not None and now - draining_since >= drain_s:
            return Decision.STOP
    return Decision.KEEP
