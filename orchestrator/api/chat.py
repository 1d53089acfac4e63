"""``POST /v1/chat/completions``: OpenAI-compatible chat on the configured LLM engine.

Streams as server-sent events (``chat.completion.chunk`` objects, then ``[DONE]``) when
``stream`` is true, else answers one ``chat.completion``. The engine is leased for the
request, so a hibernated LLM is woken (bounded by the wake timeout). A client that goes away
mid-stream stops the generation.
"""

from __future__ import annotations

import json
import time
import uuid
from contextlib import aclosing

from aiohttp import web

from orchestrator.api.bodies import ChatBody, parse
from orchestrator.api.errors import json_object
from orchestrator.api.models import resolve
from orchestrator.app.runtime import RUNTIME
from services.base import ChatModel, Role


async def chat_completions(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    body = parse(ChatBody, await json_object(request, runtime.config.api.body_timeout_s))
    name = resolve(runtime, Role.LLM, body.model)
    messages = [
        {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
        for m in body.messages
    ]
    options = body.options()
    ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    woke: list[str] = []
    timeout = runtime.config.hibernation.wake_timeout_s
    async with runtime.fleet.lease([name], timeout_s=timeout, on_waking=woke.extend) as engines:
        engine = engines[name]
        assert isinstance(engine, ChatModel)
        stream = engine.chat(messages, options=options)
        headers = {"X-Voice-Waking": ",".join(woke)} if woke else {}
        if not body.stream:
            async with aclosing(stream) as deltas:
                text = "".join([d async for d in deltas])
            return web.json_response(
                {
                    "id": ident,
                    "object": "chat.completion",
                    "created": created,
                    "model": name,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                },
                headers=headers,
            )
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **headers}
        )
        await response.prepare(request)

        def chunk(delta: dict[str, str], finish: str | None) -> bytes:
            payload = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(payload)}\n\n".encode()

        await response.write(chunk({"role": "assistant", "content": ""}, None))
        async with aclosing(stream) as deltas:
            async for delta in deltas:
                await response.write(chunk({"content": delta}, None))
        await response.write(chunk({}, "stop"))
        await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def add_chat_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
