"""The sessions' fallback chains for one REST request.

A session keeps talking when its TTS engine dies (``[sessions] fallbacks``: VibeVoice, then
Piper); a REST request for the same role must not do worse. A request for the role's default
(no model, or an OpenAI alias such as ``tts-1``, which ``resolve`` maps to the primary engine)
leases through the same ``RoleChain``: an engine that cannot load, or that fails before it gave
anything, is replaced by the next one. A request that names an engine gets that engine or its
error. Bad input is the client's: it is never retried on another engine.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from orchestrator.api.models import ALIASES
from orchestrator.app.runtime import Runtime
from orchestrator.fleet.fallback import NoEngine, RoleChain
from services.base import Engine, Role
from services.errors import EngineError, InvalidInput

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# the roles a session chains (``SessionSettings.fallbacks``) and each one's primary engine
_PRIMARY = {Role.ASR: "asr", Role.LLM: "llm", Role.TTS: "tts"}


def chain_names(runtime: Runtime, role: Role, name: str, requested: str | None) -> list[str]:
    """``name`` (what ``requested`` resolved to) and, when the request asked for the role's
    default and got the sessions' engine, that engine's fallbacks in order."""
    sessions = runtime.config.sessions
    key = _PRIMARY.get(role)
    default = requested is None or requested in ALIASES.get(role, ())
    if key is None or not default or getattr(sessions, key) != name:
        return [name]
    fallbacks = {str(k): v for k, v in sessions.fallbacks.items()}.get(key, ())
    return list(dict.fromkeys([name, *fallbacks]))


@asynccontextmanager
async def leased_chain(
    runtime: Runtime,
    role: Role,
    name: str,
    requested: str | None,
    woke: list[str],
    switched: list[str],
) -> AsyncIterator[RoleChain]:
    """A chain leased for ``name``, the engine ``requested`` resolved to (waking what it
    needs); ``woke`` hears what loaded and ``switched`` each ``from->to`` move. When no engine
    comes up, the first one's own error is raised: what the request would have got alone."""

    async def on_switch(role: str, old: str | None, new: str, why: str) -> None:
        log.warning("%s request: %s -> %s (%s)", role, old, new, why)
        switched.append(f"{old}->{new}")

    chain = RoleChain(
        str(role),
        chain_names(runtime, role, name, requested),
        runtime.fleet,
        timeout_s=runtime.config.hibernation.wake_timeout_s,
        on_switch=on_switch,
        on_waking=woke.extend,
    )
    try:
        try:
            await chain.open()
        except NoEngine:
            raise chain.errors.get(name) or NoEngine(f"no {role} engine", engine=name) from None
        yield chain
    finally:
        await chain.close()


async def first_that_works(chain: RoleChain, call: Callable[[Engine], Awaitable[_T]]) -> _T:
    """``call`` on the chain's engine; an engine error (not bad input) moves to the next engine
    and calls again, until one answers or none is left (then the last error is raised)."""
    while True:
        try:
            return await call(chain.engine)
        except InvalidInput:
            raise
        except EngineError as exc:
            if not await chain.fail(str(exc), transient=exc.transient):
                raise
