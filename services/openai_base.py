"""What the OpenAI-compatible adapters share: a base URL, an optional key, a health check.

vLLM, llama.cpp's server, whisper.cpp's server, Groq, Kokoro and the VibeVoice wrapper all speak
some of OpenAI's REST API. Such a server holds its model for as long as it runs, so ``load``
only checks that it answers (after starting it, when supervised), and ``unload`` stops the
process we supervise and does nothing to a server someone else runs.

Health is read the way each server means it: a server that says it is loading its model
(``_loading_note``) is ``loading``, not down, and ``load`` waits for it; a server that answers
nothing else while it works on a request (``stalls_while_busy``: the VibeVoice wrapper blocks its
event loop while it synthesises) is busy, not dead, while we have a request in flight.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar
from urllib.parse import urlsplit

import httpx
from pydantic import Field

from services.base import EngineHealth, EngineSpec, EngineState
from services.errors import EngineError, ModelMissing
from services.managed import ServerEngine
from services.process.probes import HttpProbe, Probe
from services.process.supervisor import Supervisor
from services.server_errors import ServerLoading, ServerUnavailable, from_status, translate
from services.server_options import Seconds, ServerOptions

LOADING_POLL_S = 0.25  # how often ``load`` asks again a server that says it is loading


class OpenAIOptions(ServerOptions):
    url: str = "http://127.0.0.1:8000/v1"  # the API's base URL, ``/v1`` included
    served_model: str | None = None  # the name the server knows (default: the engine's model)
    health_url: str | None = None  # default: GET {url}/models
    health_json_true: str | None = None  # a JSON field of the health answer that must be true
    health_timeout_s: Seconds = 5.0  # a health probe's own limit (calls keep timeout_s)
    stalls_while_busy: bool = False  # the server answers nothing else while it works on a call
    check_model: bool = False  # at load, require the model in GET {url}/models
    extra_body: dict[str, object] = Field(default_factory=dict)  # server-specific request keys


class OpenAIServer(ServerEngine):
    Options: ClassVar[type[ServerOptions]] = OpenAIOptions
    options: OpenAIOptions

    def __init__(self, spec: EngineSpec, *, supervisor: Supervisor | None = None) -> None:
        super().__init__(spec, supervisor=supervisor)
        self._in_flight = 0  # our requests the server is working on now
        self._calls = 0  # our requests ever started (a probe notes it to see one begin)

    @contextmanager
    def _working(self) -> Iterator[None]:
        """Count one request to the server while it runs; health reads the count."""
        self._in_flight += 1
        self._calls += 1
        try:
            yield
        finally:
            self._in_flight -= 1

    @property
    def model_name(self) -> str:
        return self.options.served_model or self.spec.model

    @property
    def health_url(self) -> str:
        return self.options.health_url or f"{self.base_url}/models"

    def readiness_probe(self) -> Probe:
        parts = urlsplit(self.health_url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        return HttpProbe(path or "/", json_true=self.options.health_json_true)

    async def _probe(self) -> str | EngineHealth | None:
        stalls = self.options.stalls_while_busy
        if stalls and self._in_flight:
            return self._busy()  # asking now would only wait for our own request to end
        calls = self._calls
        try:
            await self._check_health()
        except ServerLoading as exc:
            return EngineHealth(EngineState.LOADING, exc.message, "it serves again once loaded")
        except EngineError as exc:
            timed_out = isinstance(exc.__cause__, httpx.TimeoutException)
            if stalls and timed_out and (self._in_flight or self._calls != calls):
                return self._busy()  # a request of ours began while the probe waited
            return str(exc)
        return None

    def _busy(self) -> EngineHealth:
        detail = "busy with our request; the server answers health only between requests"
        return EngineHealth(self.state, detail, "")

    async def _loading_note(self, response: httpx.Response) -> str | None:
        """What a health answer says if it means "up, but loading its model", else None."""
        return None

    async def _check_health(self) -> None:
        """Return when the server says it is ready; else raise (``ServerLoading`` if loading)."""
        url = self.health_url
        try:
            response = await self.client().get(
                url, headers=self.headers(), timeout=self.options.health_timeout_s
            )
        except httpx.HTTPError as exc:
            raise translate(exc, engine=self.name, what=f"GET {url}") from exc
        loading = await self._loading_note(response)
        if loading is not None:
            raise ServerLoading(f"GET {url}: {loading}", engine=self.name)
        if response.status_code >= 400:
            status, text = response.status_code, response.text
            raise from_status(status, text, engine=self.name, what=f"GET {url}")
        field = self.options.health_json_true
        if field is not None:
            try:
                ready = json.loads(response.content).get(field) is True
            except (ValueError, AttributeError):
                ready = False
            if not ready:
                raise ServerUnavailable(f"{url} says {field} is not true", engine=self.name)

    async def _until_ready(self) -> None:
        """Check health, waiting (up to ``ready_timeout_s``) while the server says it loads."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.ready_timeout_s
        while True:
            try:
                await self._check_health()
                return
            except ServerLoading:
                if loop.time() >= deadline:
                    raise
            await asyncio.sleep(LOADING_POLL_S)

    async def _attach(self) -> None:
        await self._until_ready()
        if self.options.check_model:
            await self._require_served_model()

    async def _require_served_model(self) -> None:
        try:
            response = await self.client().get(f"{self.base_url}/models", headers=self.headers())
            response.raise_for_status()
            served = [item.get("id") for item in response.json().get("data", [])]
        except httpx.HTTPError as exc:
            raise translate(exc, engine=self.name, what="list models") from exc
        if self.model_name not in served:
            raise ModelMissing(
                f"the server does not serve {self.model_name!r} (it serves {served})",
                engine=self.name,
                hint="set options.served_model to one of those names",
            )

    async def _post_error(self, response: httpx.Response, what: str) -> Exception:
        await response.aread()
        return from_status(response.status_code, response.text, engine=self.name, what=what)
