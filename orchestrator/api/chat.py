"""``POST /v1/chat/completions``: OpenAI-compatible chat on the configured LLM engine.

A chat whose messages carry ``image_url`` parts goes to the vision-language engine instead
(``Role.VLM``), each image checked first (``orchestrator.api.images``: data URLs, allowed hosts,
byte and pixel limits, 4xx codes); OpenAI's chat model names mean the VLM there.

Streams as server-sent events (``chat.completion.chunk`` objects, then ``[DONE]``) when
``stream`` is true, else answers one ``chat.completion``. The engine is leased for the
request, so a hibernated LLM is woken (bounded by the wake timeout). A client that goes away
mid-stream stops the generation.

As OpenAI's: ``n`` choices (made one after another, streamed in turn with their ``index``),
``stop`` sequences (cut here, for every engine, and the generation stopped), ``usage`` from the
engines that count tokens (always when whole; in a last chunk without choices when streamed
with ``stream_options.include_usage``), ``finish_reason`` ``length`` when the token limit
ended a reply. What we do not do (``tools``, ``logprobs``...) is a 400 naming the parameter.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from orchestrator.api.bodies import UNSERVED_CHAT, ChatBody, parse, refuse_unserved
from orchestrator.api.errors import BadRequest, json_object
from orchestrator.api.images import chat_body_limit, has_image_parts, message_images
from orchestrator.api.models import resolve
from orchestrator.app.runtime import RUNTIME
from services.base import ChatModel, ChatUsage, Role
from services.vision import IMAGES, Image


class StopScanner:
    """Finds the first stop sequence in a stream of deltas, which may split it: text is let
    through once no stop can still begin in it."""

    def __init__(self, stops: list[str]) -> None:
        self._stops = stops
        self._keep = max((len(s) for s in stops), default=1) - 1
        self._held = ""
        self.stopped = False

    def feed(self, delta: str) -> str:
        """What of ``held + delta`` may be sent now; after a stop, nothing more."""
        if self.stopped:
            return ""
        text = self._held + delta
        found = [i for i in (text.find(s) for s in self._stops) if i >= 0]
        if found:
            self.stopped, self._held = True, ""
            return text[: min(found)]
        cut = max(0, len(text) - self._keep) if self._stops else len(text)
        self._held = text[cut:]
        return text[:cut]

    def flush(self) -> str:
        """The end of the reply: what was held back is no stop, so it goes."""
        held, self._held = self._held, ""
        return "" if self.stopped else held


@dataclass
class Choice:
    index: int
    text: list[str] = field(default_factory=list)
    usage: ChatUsage = field(default_factory=ChatUsage)
    stopped: bool = False  # a stop sequence ended it

    @property
    def finish_reason(self) -> str:
        return "stop" if self.stopped else self.usage.finish_reason


async def _reply(
    engine: ChatModel,
    messages: list[dict[str, Any]],
    options: dict[str, Any],
    stops: list[str],
    choice: Choice,
) -> AsyncIterator[str]:
    """One choice's text, cut at the first stop sequence (which closes the engine's stream,
    stopping its generation)."""
    counts = {"usage": choice.usage} if getattr(engine, "reports_usage", False) else {}
    scanner = StopScanner(stops)
    async with aclosing(engine.chat(messages, options=options, **counts)) as deltas:
        async for delta in deltas:
            text = scanner.feed(delta)
            if text:
                yield text
            if scanner.stopped:
                choice.stopped = True
                return
    tail = scanner.flush()
    if tail:
        yield tail


def _usage(choices: list[Choice], counted: bool) -> dict[str, int] | None:
    """OpenAI's usage: the prompt once, every choice's completion."""
    if not counted or not choices:
        return None
    prompt = choices[0].usage.prompt_tokens
    completion = sum(c.usage.completion_tokens for c in choices)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


async def chat_completions(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    limits = runtime.config.api
    raw = await json_object(request, limits.body_timeout_s, chat_body_limit(limits))
    body = parse(ChatBody, raw)
    refuse_unserved(raw, UNSERVED_CHAT)
    images: list[list[Image]] = [[] for _ in body.messages]
    if has_image_parts(body.messages):  # a chat about images: the VLM answers it
        if not runtime.fleet.names_for([Role.VLM]):
            raise BadRequest(
                "this server has no vision-language engine to read images",
                code="images_not_supported",
                param="messages",
            )
        name = resolve(runtime, Role.VLM, body.model)
        images = await message_images(body.messages, limits)
    else:
        name = resolve(runtime, Role.LLM, body.model)
    messages: list[dict[str, Any]] = [
        {
            "role": "system" if m.role == "developer" else m.role,
            "content": m.text(),
            **({IMAGES: pictures} if pictures else {}),
        }
        for m, pictures in zip(body.messages, images, strict=True)
    ]
    options, stops = body.options(), body.stops()
    ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    woke: list[str] = []
    timeout = runtime.config.hibernation.wake_timeout_s
    async with runtime.fleet.lease([name], timeout_s=timeout, on_waking=woke.extend) as engines:
        engine = engines[name]
        assert isinstance(engine, ChatModel)
        counted = bool(getattr(engine, "reports_usage", False))
        headers = {"X-Voice-Waking": ",".join(woke)} if woke else {}
        choices = [Choice(i) for i in range(body.n)]
        if not body.stream:
            for choice in choices:
                async for text in _reply(engine, messages, options, stops, choice):
                    choice.text.append(text)
            return web.json_response(
                {
                    "id": ident,
                    "object": "chat.completion",
                    "created": created,
                    "model": name,
                    "choices": [
                        {
                            "index": c.index,
                            "message": {"role": "assistant", "content": "".join(c.text)},
                            "finish_reason": c.finish_reason,
                        }
                        for c in choices
                    ],
                    "usage": _usage(choices, counted),
                },
                headers=headers,
            )
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **headers}
        )
        await response.prepare(request)
        send = _chunks(response, ident, created, name)
        for choice in choices:
            await send([{"index": choice.index, "delta": {"role": "assistant", "content": ""}}])
            async for text in _reply(engine, messages, options, stops, choice):
                await send([{"index": choice.index, "delta": {"content": text}}])
            finish = {"index": choice.index, "delta": {}, "finish_reason": choice.finish_reason}
            await send([finish])
        if body.stream_options is not None and body.stream_options.include_usage:
            await send([], usage=_usage(choices, counted))
        await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def _chunks(
    response: web.StreamResponse, ident: str, created: int, model: str
) -> Callable[..., Awaitable[None]]:
    """A sender of ``chat.completion.chunk`` events on ``response``."""

    async def send(choices: list[dict[str, Any]], **extra: Any) -> None:
        for choice in choices:
            choice.setdefault("finish_reason", None)
        payload = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
            **extra,
        }
        await response.write(f"data: {json.dumps(payload)}\n\n".encode())

    return send


def add_chat_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
