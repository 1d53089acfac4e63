"""Chat with any OpenAI-compatible server (vLLM, llama.cpp's server, Groq) over SSE.

``POST {url}/chat/completions`` with ``stream: true``; each ``data:`` event carries a delta, and
``data: [DONE]`` ends the reply. Closing the stream closes the connection, which is how these
servers learn to stop generating. ``stream_options.include_usage`` (vLLM, llama.cpp's server,
OpenAI) adds a last event with ``usage`` and no choices: the tokens the reply cost.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import httpx

from services.base import ChatUsage, Role
from services.errors import EngineCallError, InvalidInput
from services.openai_base import OpenAIServer
from services.server_errors import translate

_ALIASES = {"max_new_tokens": "max_tokens"}
_PASSED = {"max_tokens", "temperature", "top_p", "stop", "seed", "frequency_penalty"}


class OpenAIChat(OpenAIServer):
    role = Role.LLM

    reports_usage = True

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        options: dict[str, Any] | None = None,
        usage: ChatUsage | None = None,
    ) -> AsyncGenerator[str, None]:
        self._require_loaded()
        counted = usage if usage is not None else ChatUsage()
        if not messages:
            raise InvalidInput("no messages", engine=self.name)
        body: dict[str, Any] = {**self.options.extra_body, "model": self.model_name}
        for key, value in (options or {}).items():
            key = _ALIASES.get(key, key)
            if key in _PASSED:
                body[key] = value
        body.update(messages=messages, stream=True, stream_options={"include_usage": True})
        url = f"{self.base_url}/chat/completions"
        try:
            async with self.client().stream(
                "POST", url, json=body, headers=self.headers()
            ) as reply:
                if reply.status_code != 200:
                    raise await self._post_error(reply, "chat")
                async for line in reply.aiter_lines():
                    if not line.startswith("data:"):
                        continue  # comments, event names, keep-alives
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    for delta in self._deltas(data, counted):
                        yield delta
        except httpx.HTTPError as exc:
            raise translate(exc, engine=self.name, what="chat") from exc

    def _deltas(self, data: str, usage: ChatUsage) -> list[str]:
        try:
            event = json.loads(data)
        except ValueError as exc:
            raise EngineCallError(f"chat: bad SSE event {data[:80]!r}", engine=self.name) from exc
        if "error" in event:
            raise EngineCallError(f"chat: {event['error']}", engine=self.name)
        texts = []
        for choice in event.get("choices") or []:
            content = (choice.get("delta") or {}).get("content")
            if content:
                texts.append(str(content))
            if choice.get("finish_reason") == "length":
                usage.finish_reason = "length"
        counts = event.get("usage")
        if isinstance(counts, dict):
            usage.prompt_tokens = int(counts.get("prompt_tokens") or 0)
            usage.completion_tokens = int(counts.get("completion_tokens") or 0)
        return texts
