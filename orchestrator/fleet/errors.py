"""What the fleet refuses with: an engine name nobody configured, and engines too slow to wake.

Both sit in the one error tree (``services.errors``) with a stable code and an HTTP status, so
every front-end renders them alike.
"""

from __future__ import annotations

from services.errors import EngineError, VoiceOrchestratorError


class UnknownEngine(VoiceOrchestratorError, KeyError):
    """No engine of that name is configured (still a ``KeyError`` for lookups)."""

    code = "unknown_engine"
    status = 404

    def public_message(self) -> str:
        return f"no engine named {self.args[0]!r} is configured"


class WakeTimeout(EngineError):
    """The engines a request needs did not come up in time; they go on loading."""

    code = "engines_waking"
    status = 503
    transient = True

    def __init__(self, loading: list[str], waited_s: float) -> None:
        super().__init__(f"still loading after {waited_s:.0f} s: {', '.join(loading)}")
        self.loading = loading
        self.retry_after_s = max(1, round(waited_s / 2))
