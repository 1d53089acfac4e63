"""``GET /v1/models`` and ``GET /v1/models/{id}``: the names a client may put in ``model``.

A request's ``model`` may be an engine's name (``asr``), the model the engine runs (its
configured ``model``, e.g. ``Systran/faster-whisper-small``), or an OpenAI name a client sends
unchanged (``whisper-1``, ``tts-1``, ``gpt-4o-mini``...), which means the role's
highest-priority engine. ``resolve`` is the one place that decides it; the list shows every
name it accepts, each with the engine and role it reaches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from orchestrator.api.errors import BadRequest
from orchestrator.app.runtime import RUNTIME, Runtime
from services.base import Role

ALIASES: dict[Role, tuple[str, ...]] = {
    Role.ASR: ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"),
    Role.TTS: ("tts-1", "tts-1-hd", "gpt-4o-mini-tts"),
    Role.LLM: ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-3.5-turbo"),
    # OpenAI's chat models read images too: a chat that carries images goes to the VLM
    Role.VLM: ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini"),
}
SERVED_ROLES = (Role.ASR, Role.LLM, Role.TTS, Role.VLM)  # what the REST routes serve


class ModelNotFound(BadRequest):
    """OpenAI's 404 for a ``model`` nothing here serves."""

    status = 404

    def __init__(self, message: str) -> None:
        super().__init__(message, code="model_not_found", param="model")


@dataclass(frozen=True)
class ModelName:
    id: str
    engine: str
    role: Role
    kind: str  # "alias" | "engine" | "model"


def names(runtime: Runtime) -> list[ModelName]:
    """Every name ``resolve`` accepts, for the roles the REST routes serve."""
    listed: dict[str, ModelName] = {}
    engines = runtime.config.engines
    for role in SERVED_ROLES:
        candidates = runtime.fleet.names_for([role])
        if not candidates:
            continue
        default = max(candidates, key=lambda n: engines[n].priority)
        for name in sorted(candidates):
            listed.setdefault(name, ModelName(name, name, role, "engine"))
            listed.setdefault(
                engines[name].model, ModelName(engines[name].model, name, role, "model")
            )
        for alias in ALIASES[role]:
            listed.setdefault(alias, ModelName(alias, default, role, "alias"))
    return list(listed.values())


def resolve(runtime: Runtime, role: Role, model: str | None) -> str:
    """The engine of ``role`` that serves ``model``: an engine's name, the model an engine runs,
    an OpenAI alias, or (no model) the role's highest-priority engine."""
    candidates = runtime.fleet.names_for([role])
    engines = runtime.config.engines
    if model in candidates:
        return model
    running = [n for n in candidates if engines[n].model == model]
    if model and running:
        return max(running, key=lambda n: engines[n].priority)
    if candidates and (not model or model in ALIASES.get(role, ())):
        return max(candidates, key=lambda n: engines[n].priority)
    known = sorted({m.id for m in names(runtime) if m.role is role})
    raise ModelNotFound(
        f"The model {model!r} does not exist for {role}; known: {', '.join(known) or 'none'}"
    )


def _entry(name: ModelName, created: int) -> dict[str, Any]:
    return {
        "id": name.id,
        "object": "model",
        "created": created,
        "owned_by": "voice-orchestrator",
        "engine": name.engine,
        "role": str(name.role),
        "kind": name.kind,
    }


def add_model_routes(app: web.Application) -> None:
    created = int(time.time())

    async def list_models(request: web.Request) -> web.Response:
        data = [_entry(name, created) for name in names(request.app[RUNTIME])]
        return web.json_response({"object": "list", "data": data})

    async def retrieve_model(request: web.Request) -> web.Response:
        wanted = request.match_info["model"]
        for name in names(request.app[RUNTIME]):
            if name.id == wanted:
                return web.json_response(_entry(name, created))
        raise ModelNotFound(f"The model {wanted!r} does not exist")

    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model:.+}", retrieve_model)
