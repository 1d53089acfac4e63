"""Chat with an LLM served by Ollama: a server already running, or ``ollama serve`` supervised.

Ollama keeps a model for ``keep_alive`` after each request (5 min by default) and unloads it on
its own timer. Here the hibernation ladder decides, so every request sets ``keep_alive``
explicitly (default -1: until we unload it). Load is ``POST /api/generate`` without a prompt;
unload is the same with ``keep_alive: 0``, confirmed on ``/api/ps`` (Ollama expires the runner
after answering). Residency and measured VRAM come from ``/api/ps`` (``size_vram``).

What Ollama does that this adapter keeps in step with (ollama v0.32, server/sched.go,
envconfig/config.go, types/model/name.go):

- Runner options (``num_ctx``, ``num_batch``, ``num_gpu``, ``main_gpu``, ``use_mmap``,
  ``num_thread``): any difference from the loaded runner's makes Ollama reload the model. The
  load and every chat send the same ones (``num_ctx`` and those in ``model_options``); a
  caller's runner options are dropped.
- Parallelism: a runner serves ``OLLAMA_NUM_PARALLEL`` requests at once (default 1); a second
  session's reply waits for the first's whole reply. A supervised ``ollama serve`` is started
  with the number of sessions the VRAM plan budgeted (``EngineSpec.sessions``; ``options.env``
  may override it), and the value the server read is taken from its ``server config`` log line
  and reported by ``concurrency()``. A server someone else runs cannot be checked.
- Names: ``/api/ps`` shows the shortest display name in the case the model was stored in
  (``mistral:latest`` for ``library/Mistral``); names are compared as Ollama parses them.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
import ollama
from pydantic import Field, field_validator

from services.base import ChatUsage, Concurrency, EngineState, Role
from services.errors import (
    EngineCallError,
    EngineError,
    EngineLoadError,
    InvalidInput,
    ModelMissing,
)
from services.ollama_server import SharedServer
from services.ollama_wire import model_key, server_parallelism
from services.process.probes import HttpProbe, Probe
from services.server_errors import from_status, translate
from services.server_options import Seconds, ServerOptions

log = logging.getLogger(__name__)

_GO_DURATION = re.compile(r"^-?(\d+(\.\d*)?(ns|us|µs|ms|s|m|h))+$")
# Our generic option names, as the cascade and the chat API pass them, in Ollama's words.
_ALIASES = {"max_new_tokens": "num_predict", "max_tokens": "num_predict"}
_IGNORED = {"min_new_tokens"}
# api.Runner: a value other than the loaded runner's makes Ollama reload the model.
RUNNER_OPTIONS = frozenset(
    {"num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread", "draft_num_predict"}
)
# Serve logs its environment before it listens: msg="server config" env="map[... K:V ...]"
CONFIG_LINE_WAIT_S = 2.0  # how long to wait for that line once the server answers


class OllamaOptions(ServerOptions):
    url: str = "http://127.0.0.1:11434"
    binary: str = "ollama"  # supervised: runs `<binary> serve` unless `command` is given
    keep_alive: float | str = -1  # seconds, or a Go duration ("24h"); negative: until unloaded
    num_ctx: int = Field(default=4096, ge=256)
    pull: bool = False  # pull a model the server lacks (progress in the log and health)
    unload_timeout_s: Seconds = 30.0
    ready_timeout_s: Seconds = 60.0
    # temperature, top_p, seed...; runner options here (num_thread...) also go with the load
    model_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("model_options")
    @classmethod
    def _num_ctx_once(cls, value: dict[str, Any]) -> dict[str, Any]:
        if "num_ctx" in value:
            raise ValueError("num_ctx is set as options.num_ctx, not in model_options")
        return value

    @field_validator("keep_alive")
    @classmethod
    def _duration(cls, value: float | str) -> float | str:
        if isinstance(value, str) and value != "0" and not _GO_DURATION.match(value):
            raise ValueError("a number of seconds or a duration with a unit, like '30m' or '-1m'")
        return value


class OllamaChat(SharedServer):
    role = Role.LLM
    Options = OllamaOptions
    unload_stops_process = False  # Ollama unloads a model on request; its server stays up
    options: OllamaOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._api: ollama.AsyncClient | None = None
        self._resident: ollama.ProcessResponse.Model | None = None
        self._serving: int | None = None  # OLLAMA_NUM_PARALLEL as the supervised server read it
        self._attached = False

    # -- server and model --------------------------------------------------------------------

    install_hint = (
        "install Ollama (https://ollama.com/download) or set options.binary to its path; "
        "or set options.supervise = false to use an Ollama server you run yourself"
    )

    def default_command(self) -> tuple[str, ...]:
        return (self.options.binary, "serve")

    def default_env(self) -> dict[str, str]:
        parts = urlsplit(self.base_url)
        return {
            "OLLAMA_HOST": f"{parts.hostname}:{parts.port or 11434}",
            # as many replies at once as the plan has sessions (Ollama's default is one)
            "OLLAMA_NUM_PARALLEL": str(self.spec.sessions),
        }

    def readiness_probe(self) -> Probe:
        return HttpProbe("/api/version")

    def _ollama(self) -> ollama.AsyncClient:
        if self._api is None:
            client = self.client()  # same timeouts and proxy rule as every server engine
            self._api = ollama.AsyncClient(
                host=self.base_url,
                timeout=client.timeout,
                trust_env=client.trust_env,
                headers=self.headers(),
            )
        return self._api

    async def _probe(self) -> str | None:
        try:
            response = await self.client().get(f"{self.base_url}/api/version")
            response.raise_for_status()
        except httpx.HTTPError as exc:
            return f"Ollama at {self.base_url}: {translate(exc, engine=self.name, what='version')}"
        return None

    async def _attach(self) -> None:
        model = self.spec.model
        try:
            await self._generate_load()
        except ollama.ResponseError as exc:
            if exc.status_code != 404:
                raise self._translate(exc, "load") from exc
            if not self.options.pull:
                raise ModelMissing(
                    f"Ollama has no model {model!r}",
                    engine=self.name,
                    hint=f"run `ollama pull {model}` on that server, or set options.pull = true",
                ) from exc
            await self._pull()
            await self._generate_load()
        await self._refresh_residency()
        if self._resident is None:
            raise EngineLoadError(
                f"Ollama answered the load but /api/ps lacks {model}", engine=self.name
            )
        await self._check_parallelism()

    async def _generate_load(self) -> None:
        try:
            await self._ollama().generate(
                model=self.spec.model,
                keep_alive=self.options.keep_alive,
                options=self._runner_options(),
            )
        except ollama.ResponseError:
            raise
        except (httpx.HTTPError, ConnectionError) as exc:
            raise self._translate(exc, "load") from exc

    async def _pull(self) -> None:
        model, logged = self.spec.model, -10
        log.info("%s: pulling %s", self.name, model)
        try:
            stream = await self._ollama().pull(model, stream=True)
            async for progress in stream:
                if progress.total and progress.completed is not None:
                    percent = int(100 * progress.completed / progress.total)
                    self._hint = f"pulling {model}: {percent}% of {progress.total / 1e6:.0f} MB"
                    if percent >= logged + 10:
                        logged = percent
                        log.info("%s: %s", self.name, self._hint)
                else:
                    self._hint = f"pulling {model}: {progress.status}"
        except ollama.ResponseError as exc:
            raise ModelMissing(
                f"Ollama could not pull {model!r}: {exc.error}",
                engine=self.name,
                hint="check the model name and the server's internet access",
            ) from exc
        except (httpx.HTTPError, ConnectionError) as exc:
            raise self._translate(exc, "pull") from exc
        self._hint = ""

    async def _detach(self) -> None:
        try:
            await self._ollama().generate(model=self.spec.model, keep_alive=0)
        except ollama.ResponseError as exc:
            if exc.status_code != 404:  # 404: no such model, so nothing is loaded
                raise self._translate(exc, "unload") from exc
        except (httpx.HTTPError, ConnectionError) as exc:
            raise self._translate(exc, "unload") from exc
        deadline = time.monotonic() + self.options.unload_timeout_s
        delay = 0.05
        while True:  # Ollama expires the runner after answering: wait until /api/ps agrees
            await self._refresh_residency()
            if self._resident is None:
                return
            if time.monotonic() >= deadline:
                raise EngineCallError(
                    f"/api/ps still lists {self.spec.model} {self.options.unload_timeout_s:g} s "
                    "after unloading it",
                    engine=self.name,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def _refresh_residency(self) -> None:
        try:
            running = await self._ollama().ps()
        except (ollama.ResponseError, httpx.HTTPError, ConnectionError) as exc:
            raise self._translate(exc, "ps") from exc
        wanted = model_key(self.spec.model)
        self._resident = next(
            (m for m in running.models if model_key(m.model or m.name or "") == wanted), None
        )

    # -- parallelism -------------------------------------------------------------------------

    async def _check_parallelism(self) -> None:
        """Read what the supervised server runs with and say so when it is not the plan."""
        first, self._attached = not self._attached, True
        process = self._process
        if process is None:
            if first and self.spec.sessions > 1:
                log.warning("%s: %s", self.name, self.concurrency().detail)
            return
        self._serving = server_parallelism(process.log.texts())
        if self._serving is None:  # logged before it listened: normally read already
            try:
                async with (
                    asyncio.timeout(CONFIG_LINE_WAIT_S),
                    aclosing(process.log.follow(backlog=0)) as lines,
                ):
                    async for line in lines:
                        if (found := server_parallelism([line.text])) is not None:
                            self._serving = found
                            break
            except TimeoutError:
                pass
        if self._serving != self.spec.sessions:
            log.warning("%s: %s", self.name, self.concurrency().detail)

    def concurrency(self) -> Concurrency:
        planned, serving = self.spec.sessions, self._serving
        wanted = f"OLLAMA_NUM_PARALLEL={planned}"
        if not self.options.supervise:
            detail = (
                f"Ollama at {self.base_url} is not run by us: its parallelism is unknown; "
                f"start it with {wanted} for the {planned} session(s) the plan budgets"
            )
        elif not self._attached:
            given = self.process_spec().env.get("OLLAMA_NUM_PARALLEL", "1")
            detail = f"starts with OLLAMA_NUM_PARALLEL={given}"
        elif serving is None:
            detail = "ollama serve did not log its server config: parallelism not confirmed"
        elif serving < planned:
            detail = (
                f"Ollama serves {serving} at a time but the plan budgets {planned} "
                f"sessions: a session's reply waits for another's (set {wanted}, or remove "
                "OLLAMA_NUM_PARALLEL from options.env)"
            )
        elif serving > planned:
            detail = (
                f"Ollama serves {serving} replies at once but the VRAM plan budgets {planned}: "
                "it may hold more VRAM than planned"
            )
        else:
            detail = f"OLLAMA_NUM_PARALLEL={serving}, as planned"
        return Concurrency(planned=planned, serving=serving, detail=detail)

    async def _check_residency(self) -> None:
        if self._state is not EngineState.LOADED:
            return
        try:
            await self._refresh_residency()
        except EngineError:
            return  # the probe reports an unreachable server
        if self._resident is None and self._state is EngineState.LOADED:
            self._state = EngineState.UNLOADED
            self._last_error = "Ollama dropped the model on its own (no longer in /api/ps)"

    def _measure(self) -> tuple[int | None, int | None]:
        resident = self._resident
        if resident is None or resident.size is None:
            return None, None
        vram = int(resident.size_vram or 0)
        return int(resident.size) - vram, vram

    async def _close_client(self) -> None:
        await super()._close_client()
        self._resident = None
        if self._api is not None:
            await self._api.close()  # type: ignore[no-untyped-call]
            self._api = None

    # -- the role call -----------------------------------------------------------------------

    reports_usage = True  # the last part's prompt_eval_count, eval_count and done_reason

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        options: dict[str, Any] | None = None,
        usage: ChatUsage | None = None,
    ) -> AsyncGenerator[str, None]:
        """Stream the reply's text; closing the stream closes the request, and Ollama stops."""
        self._require_loaded()
        counted = usage if usage is not None else ChatUsage()
        if not messages:
            raise InvalidInput("no messages", engine=self.name)
        try:
            stream = await self._ollama().chat(
                model=self.spec.model,
                messages=messages,
                stream=True,
                keep_alive=self.options.keep_alive,
                options=self._request_options(options),
            )
            async with aclosing(cast(AsyncGenerator[ollama.ChatResponse, None], stream)) as parts:
                async for part in parts:
                    if part.message.content:
                        yield part.message.content
                    if part.done:
                        counted.prompt_tokens = part.prompt_eval_count or 0
                        counted.completion_tokens = part.eval_count or 0
                        counted.finish_reason = "length" if part.done_reason == "length" else "stop"
        except (ollama.ResponseError, httpx.HTTPError, ConnectionError) as exc:
            raise self._translate(exc, "chat") from exc

    def _runner_options(self) -> dict[str, Any]:
        """The load's runner options; every chat sends the same, or Ollama would reload."""
        runner = {k: v for k, v in self.options.model_options.items() if k in RUNNER_OPTIONS}
        return {"num_ctx": self.options.num_ctx, **runner}

    def _request_options(self, options: dict[str, Any] | None) -> dict[str, Any]:
        merged = dict(self.options.model_options)
        for key, value in (options or {}).items():
            key = _ALIASES.get(key, key)
            if key in RUNNER_OPTIONS:
                log.debug("%s: a caller's %s is dropped: it would reload the model", self.name, key)
            elif key not in _IGNORED:
                merged[key] = value
        return {**merged, **self._runner_options()}

    def _translate(self, exc: Exception, what: str) -> EngineError:
        if isinstance(exc, ollama.ResponseError):
            if exc.status_code < 0:  # an error line inside a stream
                return EngineCallError(f"{what}: Ollama: {exc.error}", engine=self.name)
            return from_status(exc.status_code, exc.error, engine=self.name, what=what)
        return translate(exc, engine=self.name, what=what)
