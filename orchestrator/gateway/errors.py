"""What the gateway refuses, in the product's one error tree (``services/errors.py``)."""

from __future__ import annotations

from typing import Any

from services.errors import VoiceOrchestratorError


class HostWaking(VoiceOrchestratorError):
    """The host is not ready within the request's hold: retry after ``retry_after_s``."""

    code = "host_waking"
    status = 503
    transient = True

    def __init__(self, state: str, eta_s: float) -> None:
        super().__init__(f"the GPU host is waking up ({state}); ready in about {eta_s:.0f} s")
        self.state = state
        self.eta_s = eta_s
        self.retry_after_s = max(1, round(min(eta_s, 30.0)))

    def wire_fields(self) -> dict[str, Any]:
        return {"state": self.state, "eta_s": self.eta_s}


class HostStartFailed(VoiceOrchestratorError):
    """The provider could not start the host (no capacity in the zone, quota, a dead command).
    ``stockout`` marks a want of capacity, after which a fallback instance is tried."""

    code = "host_start_failed"
    status = 503
    transient = True

    def __init__(self, reason: str, *, stockout: bool = False, retry_after_s: int = 30) -> None:
        super().__init__(reason)
        self.reason = reason
        self.stockout = stockout
        self.retry_after_s = retry_after_s

    def wire_fields(self) -> dict[str, Any]:
        return {"retry_after_s": self.retry_after_s}


class ProviderError(VoiceOrchestratorError):
    """A provider call failed for another reason (credentials, a typo in the instance name,
    an API outage); the message names the call and the provider's words."""

    code = "host_provider_error"
    status = 502
    transient = True


class HostLost(VoiceOrchestratorError):
    """The host went away under an open session (killed, preempted, unreachable)."""

    code = "host_lost"
    status = 502
    transient = True
