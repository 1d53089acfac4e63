"""Options of server engines (``[engines.X.options]``), validated once when the engine is built.

Every server engine takes these; each adapter adds its own keys and defaults in a subclass.
A bad value is an error that names its key path (``engines.llm.options.url``). An unknown key
is only a warning: config layers merge ``options`` key by key, so an operator who switches a
profile's engine to another adapter inherits the old adapter's options.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.base import EngineSpec
from services.process.restart_policy import RestartPolicy

log = logging.getLogger(__name__)

Seconds = Annotated[float, Field(gt=0)]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RestartOptions(_Options):
    enabled: bool = True
    initial_delay_s: Annotated[float, Field(ge=0)] = 1.0
    factor: Annotated[float, Field(ge=1)] = 2.0
    max_delay_s: Seconds = 30.0
    max_restarts: Annotated[int, Field(ge=0)] = 5
    window_s: Seconds = 300.0
    stable_after_s: Seconds = 60.0

    def policy(self) -> RestartPolicy:
        return RestartPolicy(
            restart=self.enabled,
            initial_delay_s=self.initial_delay_s,
            factor=self.factor,
            max_delay_s=max(self.max_delay_s, self.initial_delay_s),
            max_restarts=self.max_restarts,
            window_s=self.window_s,
            stable_after_s=self.stable_after_s,
        )


class ServerOptions(_Options):
    url: str = "http://127.0.0.1:8000"  # base URL; adapters set their usual default
    supervise: bool = False  # start and watch the server process ourselves
    command: tuple[str, ...] = ()  # the process to supervise (adapters may know a default)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: Path | None = None
    ready_timeout_s: Seconds = 120.0
    stop_grace_s: Seconds = 10.0
    restart: RestartOptions = RestartOptions()
    log_lines: Annotated[int, Field(ge=10)] = 500
    api_key_env: str | None = None  # NAME of the environment variable holding a bearer key
    timeout_s: Seconds = 120.0
    connect_timeout_s: Seconds = 5.0
    health_cache_s: Annotated[float, Field(ge=0)] = 2.0


OptionsT = TypeVar("OptionsT", bound=ServerOptions)


def parse_options(model: type[OptionsT], spec: EngineSpec) -> OptionsT:
    known = {key: value for key, value in spec.options.items() if key in model.model_fields}
    for key in sorted(set(spec.options) - set(known)):
        log.warning("engines.%s.options.%s: not an option of this adapter; ignored", spec.name, key)
    try:
        return model.model_validate(known)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"])
            message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
            problems.append(f"engines.{spec.name}.options.{key}: {message}")
        raise ValueError("; ".join(problems)) from None
