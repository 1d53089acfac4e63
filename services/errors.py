"""The one exception tree of the product: every error it raises derives from one root.

    class                              code                   status  transient  module
    VoiceOrchestratorError             internal_error         500     no         s.errors
    ├── EngineError                    engine_error           503     no         s.errors
    │   ├── ModelMissing               model_missing          503     no         s.errors
    │   ├── EngineLoadError            load_failed            503     no         s.errors
    │   ├── EngineNotLoaded            engine_not_loaded      503     yes        s.errors
    │   ├── CannotPark                 cannot_park            503     no         s.errors
    │   ├── EngineCallError            engine_call_failed     502     yes        s.errors
    │   │   ├── ServerUnavailable      server_unavailable     503     yes        s.server_errors
    │   │   │   ├── ServerLoading      server_loading         503     yes        s.server_errors
    │   │   │   └── ServerBusy         server_busy            503     yes        s.server_errors
    │   │   ├── ServerRejected         server_rejected        502     no         s.server_errors
    │   │   ├── SessionEnded           duplex_session_ended   502     yes        s.duplex_client
    │   │   ├── HandshakeTimeout       duplex_busy            503     yes        s.duplex_client
    │   │   └── ConnectionBusy         duplex_busy            503     yes        s.duplex_client
    │   ├── InvalidInput               invalid_input          400     no         s.errors
    │   │   ├── InvalidEvent           (OpenAI's, per field)  400     no         o.api.realtime
    │   │   ├── BadRequest             (each case's own)      400     no         o.api.errors
    │   │   ├── UnsupportedLanguage    unsupported_language   400     no         s.translation
    │   │   └── AudioTooLong           audio_too_long         413     no         o.voice.audio
    │   ├── AdmissionRefused           insufficient_vram      503     yes        o.gpu.admission
    │   ├── VramNotRecovered           vram_not_recovered     503     yes        o.gpu.telemetry
    │   ├── NoEngine                   no_engine_available    503     yes        o.fleet.fallback
    │   └── WakeTimeout                engines_waking         503     yes        o.fleet.errors
    ├── UnknownEngine (KeyError)       unknown_engine         404     no         o.fleet.errors
    ├── DownloadError                  download_failed        502     no         o.fleet.downloads
    ├── DuplexUnavailable              duplex_unavailable     503     yes        o.duplex.routing
    ├── Refused                        (each refusal's own)   400     no         o.api.realtime
    ├── TurnRefused                    (OpenAI's, per case)   400     no         o.voice
    ├── SupervisorError                process_error          503     no         s.process
    │   ├── PortTaken                  port_taken             503     no         s.process
    │   └── ProcessFailed              process_failed         503     no         s.process
    ├── ProtocolError (ValueError)     duplex_protocol_error  502     no         s.duplex_protocol
    ├── ConfigError                    invalid_config         500     no         o.config
    ├── UnknownModel (LookupError)     unknown_model          404     no         o.gpu.catalog
    ├── PlanError (ValueError)         invalid_plan_request   400     no         o.gpu.planner
    ├── TraceError (ValueError)        invalid_trace          400     no         o.credits.traces
    ├── PortInUse                      port_in_use            500     no         o.core.sites
    ├── CommandError                   command_failed         400     no         o.commands
    ├── SimulationError (ValueError)   invalid_simulation     400     no         console
    ├── OverrideError (ValueError)     invalid_override       400     no         console
    ├── HostWaking                     host_waking            503     yes        o.gateway.errors
    ├── HostStartFailed                host_start_failed      503     yes        o.gateway.errors
    ├── ProviderError                  host_provider_error    502     yes        o.gateway.errors
    ├── HostLost                       host_lost              502     yes        o.gateway.errors
    └── IllegalMove (ValueError)       internal_error         500     no         o.gateway.lifecycle

    (s. is services., o. is orchestrator.)

Every class carries a stable ``code`` (safe to show to API clients), the HTTP ``status`` it is
answered with, and ``transient``: whether retrying the same thing may help. ``transient`` is a
class default that an instance may override (``ProcessFailed`` for a busy executable, say).
Fallback chains probe again only engines that failed transiently, and the process supervisor
restarts after a transient failure and gives up on a permanent one: they decide on that flag,
never on message text or class lists. ``EngineError`` is the branch to catch where an engine is
needed. Strays that had a built-in base (``KeyError``, ``ValueError``, ``LookupError``) keep it,
so callers that catch the built-in still work. ``orchestrator.api.errors.describe`` turns any of
them into the one shape that HTTP and the Realtime socket both send. Adapters wrap library
exceptions with ``raise ... from exc`` so the cause stays in the traceback.
"""

from __future__ import annotations

from typing import Any


class VoiceOrchestratorError(Exception):
    """The root. Subclasses set ``code``, ``status`` and ``transient``; an instance may set
    ``transient``, ``param`` (the request field at fault) and ``retry_after_s``."""

    code: str = "internal_error"
    status: int = 500
    transient: bool = False
    param: str | None = None
    retry_after_s: int | None = None

    def public_message(self) -> str:
        """What a client is told (the message, plus whatever helps it act on it)."""
        return str(self)

    def wire_fields(self) -> dict[str, Any]:
        """Fields a client may act on, added to the error object it is sent (a waking host's
        ``state`` and ``eta_s``, say); none by default."""
        return {}


class EngineError(VoiceOrchestratorError):
    """Base of all engine errors: an engine failed or refused what it was asked, or the fleet
    could not bring one up (no room, no engine left, not loaded in time). Whoever needs an
    engine catches this branch."""

    code = "engine_error"
    status = 503

    def __init__(
        self, message: str, *, engine: str | None = None, transient: bool | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.engine = engine
        if transient is not None:
            self.transient = transient

    def __str__(self) -> str:
        return f"{self.engine}: {self.message}" if self.engine else self.message


class ModelMissing(EngineError):
    """The model's files are not on disk; ``hint`` says how to get them."""

    code = "model_missing"

    def __init__(self, message: str, *, engine: str | None = None, hint: str = "") -> None:
        super().__init__(message, engine=engine)
        self.hint = hint

    def public_message(self) -> str:
        return f"{self}. {self.hint}" if self.hint else str(self)


class EngineLoadError(EngineError):
    code = "load_failed"


class EngineNotLoaded(EngineError):
    code = "engine_not_loaded"
    transient = True


class CannotPark(EngineError):
    """The engine has no parked state (or its server was not started with one): the fleet
    unloads it instead, and says why."""

    code = "cannot_park"


class EngineCallError(EngineError):
    code = "engine_call_failed"
    status = 502
    transient = True


class InvalidInput(EngineError):
    """The caller's data is unusable (bad audio, empty text, a malformed body)."""

    code = "invalid_input"
    status = 400
