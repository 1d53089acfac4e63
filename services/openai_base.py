"""What the OpenAI-compatible adapters share: a base URL, an optional key, a health check.

vLLM, llama.cpp's server, whisper.cpp's server, Groq, Kokoro and the VibeVoice wrapper all speak
some of OpenAI's REST API. Such a server holds its model for as long as it runs, so ``load``
only checks that it answers (after starting it, when supervised), and ``unload`` stops the
process we supervise and does nothing to a server someone else runs.
"""

from __future__ import annotations

import json
from typing import ClassVar
from urllib.parse import urlsplit

import httpx
from pydantic import Field

from services.errors import EngineError, ModelMissing
from services.managed import ServerEngine
from services.process.probes import HttpProbe, Probe
from services.server_errors import ServerUnavailable, from_status, translate
from services.server_options import ServerOptions


class OpenAIOptions(ServerOptions):
    url: str = "http://127.0.0.1:8000/v1"  # the API's base URL, ``/v1`` included
    served_model: str | None = None  # the name the server knows (default: the engine's model)
    health_url: str | None = None  # default: GET {url}/models
    health_json_true: str | None = None  # a JSON field of the health answer that must be true
    check_model: bool = False  # at load, require the model in GET {url}/models
    extra_body: dict[str, object] = Field(default_factory=dict)  # server-specific request keys


class OpenAIServer(ServerEngine):
    Options: ClassVar[type[ServerOptions]] = OpenAIOptions
    options: OpenAIOptions

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

    async def _probe(self) -> str | None:
        try:
            await self._check_health()
        except EngineError as exc:
            return str(exc)
        return None

    async def _check_health(self) -> None:
        try:
            response = await self.client().get(self.health_url, headers=self.headers())
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise translate(exc, engine=self.name, what=f"GET {self.health_url}") from exc
        field = self.options.health_json_true
        if field is not None:
            try:
                ready = json.loads(response.content).get(field) is True
            except (ValueError, AttributeError):
                ready = False
            if not ready:
                raise ServerUnavailable(
                    f"{self.health_url} says {field} is not true", engine=self.name
                )

    async def _attach(self) -> None:
        await self._check_health()
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
