"""The one exception tree every adapter raises; engine library errors are translated here.

    EngineError                  base of everything an engine reports
    ├── ModelMissing             weights are not on disk (permanent until downloaded)
    ├── EngineLoadError          the runtime refused to load the model
    ├── EngineNotLoaded          a role call on an engine that is not loaded
    ├── EngineCallError          a role call failed inside the engine
    └── InvalidInput             the caller's data is unusable (bad audio, empty text)

Each error says whether it is transient (retrying may help) so fallback chains and the
supervisor decide on that flag, never on message text. Adapters wrap library exceptions with
``raise ... from exc`` so the cause stays in the traceback.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of all engine errors. ``code`` is stable and safe to show to API clients."""

    code = "engine_error"
    transient = False

    def __init__(self, message: str, *, engine: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.engine = engine

    def __str__(self) -> str:
        return f"{self.engine}: {self.message}" if self.engine else self.message


class ModelMissing(EngineError):
    """The model's files are not on disk; ``hint`` says how to get them."""

    code = "model_missing"

    def __init__(self, message: str, *, engine: str | None = None, hint: str = "") -> None:
        super().__init__(message, engine=engine)
        self.hint = hint


class EngineLoadError(EngineError):
    code = "load_failed"


class EngineNotLoaded(EngineError):
    code = "engine_not_loaded"
    transient = True


class EngineCallError(EngineError):
    code = "engine_call_failed"
    transient = True


class InvalidInput(EngineError):
    code = "invalid_input"
