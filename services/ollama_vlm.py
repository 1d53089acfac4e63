"""A vision-language model served by Ollama (``qwen2.5vl``, ``llava``, ``minicpm-v``...).

The LLM adapter's engine (``services.ollama_llm``: load and unload through ``keep_alive``,
residency and VRAM from ``/api/ps``, runner options kept equal, supervision), with images: each
message's images go in its ``images`` field, base64 of the file's bytes, as Ollama's
``/api/chat`` takes them (ollama v0.33 ``api/types.go``: ``Message.Images []ImageData``, raw
bytes that Go's JSON writes as base64; ``server/prompt.go`` puts each image's marker before the
message's text). Before loading, ``/api/show`` must list the model's ``vision`` capability, so
a text-only model configured as the VLM fails its load with that reason instead of answering
about images it never saw.

One server, two models: where the LLM is Ollama too, at the same address, both engines share
one supervised ``ollama serve`` (``OllamaChat.process``: whichever loads first starts it, the
other joins it). Each engine loads and unloads only its own model; stopping the process (DORMANT)
stops it for both, and each re-attaches its model after a restart.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import httpx
import ollama

from services.base import ChatUsage, Role
from services.errors import EngineLoadError
from services.ollama_llm import OllamaChat
from services.vision import IMAGES, images_of

VISION = "vision"  # Ollama's capability name (types/model/capability.go)


class OllamaVision(OllamaChat):
    role = Role.VLM
    vision = True

    async def _attach(self) -> None:
        """Check the capability before loading (another engine may run the same model: a
        failed check must not unload it); a model the load pulls is checked after."""
        shown = await self._capabilities()
        if shown is not None:
            self._require_vision(shown)
        await super()._attach()
        if shown is None:
            pulled = await self._capabilities() or []
            if VISION not in pulled:
                await self._detach()  # pulled and loaded just now: give its memory back
                self._require_vision(pulled)

    async def _capabilities(self) -> list[str] | None:
        """What ``/api/show`` says the model can do; None when the server lacks it."""
        try:
            shown = await self._ollama().show(self.spec.model)
        except ollama.ResponseError as exc:
            if exc.status_code == 404:
                return None
            raise self._translate(exc, "show") from exc
        except (httpx.HTTPError, ConnectionError) as exc:
            raise self._translate(exc, "show") from exc
        return [str(c) for c in (shown.capabilities or [])]

    def _require_vision(self, capabilities: list[str]) -> None:
        if VISION not in capabilities:
            raise EngineLoadError(
                f"Ollama's {self.spec.model!r} cannot read images (its capabilities: "
                f"{', '.join(capabilities) or 'none listed'}); configure a vision model such as "
                "qwen2.5vl, llava or minicpm-v",
                engine=self.name,
                transient=False,
            )

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        options: dict[str, Any] | None = None,
        usage: ChatUsage | None = None,
    ) -> AsyncGenerator[str, None]:
        """As the LLM's, each message's images sent along with it."""
        wire = [_wire_message(m) for m in messages]
        async for delta in super().chat(wire, options=options, usage=usage):
            yield delta


def _wire_message(message: dict[str, Any]) -> dict[str, Any]:
    plain = {k: v for k, v in message.items() if k != IMAGES}
    images = images_of(message)
    if images:
        plain[IMAGES] = [ollama.Image(value=image.data) for image in images]
    return plain
