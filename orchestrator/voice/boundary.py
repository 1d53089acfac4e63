"""What a session takes from the server, and what it tells its front-end.

Sessions (this package and ``orchestrator.duplex``) sit below ``orchestrator.app``: they never
see the ``Runtime``. Whoever opens one hands it a ``SessionDeps`` with only what sessions use
(``Runtime.session_deps()`` in the server, fakes in a test), so a session's reach is written
in one place. A cascade session reports what happens through ``Emit`` with ``SessionEvent``s,
which each front-end renders in its own wire protocol.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

from orchestrator.config import SessionsConfig
from orchestrator.core.events import EventBus
from orchestrator.core.metrics import Metrics
from orchestrator.fleet.fleet import Fleet
from services.errors import EngineError, VoiceOrchestratorError


class SessionActivity(Protocol):
    """Hears sessions open and close (the hibernator: an open session is activity)."""

    def session_opened(self, session_id: str) -> None: ...

    def session_closed(self, session_id: str) -> None: ...


class Described(Protocol):
    """An open session as the console lists it."""

    def summary(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class SessionDeps:
    """The narrow view of the server a session works with."""

    fleet: Fleet  # engines, leased for as long as the session is open
    settings: SessionsConfig
    wake_timeout_s: float  # how long a lease may wait for its engines to load
    activity: SessionActivity
    registry: MutableMapping[str, Described]  # open sessions by id
    metrics: Metrics
    bus: EventBus


@dataclass(frozen=True)
class SessionEvent:
    """What happened, for the front-end: ``kind`` plus the fields that kind uses."""

    kind: str  # waking|speech_started|speech_stopped|partial_transcript|transcript|fallback|
    # reply_started|reply_text|reply_audio|reply_done|error
    item_id: str = ""
    response_id: str = ""
    text: str = ""
    audio: bytes = b""
    at_ms: int = 0
    status: str = ""
    code: str = ""
    engines: tuple[str, ...] = ()
    error: EngineError | None = None  # kind error: what failed, for the front-end to render


Emit = Callable[[SessionEvent], Awaitable[None]]


class TurnRefused(VoiceOrchestratorError):
    """A well-formed request a session cannot do in its state, with OpenAI's codes (the
    front-end answers an error and the session goes on):

        code                                       when
        conversation_already_has_active_response  a reply is asked for while one is running
        response_cancel_not_active                 a cancel while no reply is running
        input_audio_buffer_commit_empty            a commit of less than 100 ms of audio
    """

    code = "turn_refused"
    status = 400

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
