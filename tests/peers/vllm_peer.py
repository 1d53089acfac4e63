"""A stand-in for vLLM's OpenAI-compatible server with sleep mode, backed by the tiny test LM.

It follows vLLM's main branch: the dev-mode router ``vllm/entrypoints/serve/sleep/api_router.py``
(commit 09cb327f) and ``docs/features/sleep_mode.md`` (commit 01181ddf). What it serves:

    GET  /health                 200, empty body (vLLM's answer while its engine lives)
    GET  /v1/models              the served model name (``--served-model-name``, else the path)
    POST /v1/chat/completions    SSE ``data: {chunk}`` events, ``data: [DONE]``; usage in a last
                                 chunk without choices when ``stream_options.include_usage``
    POST /sleep?level=1          only with VLLM_SERVER_DEV_MODE=1 in the environment (else 404,
                                 as vLLM attaches the router only then); without
                                 ``--enable-sleep-mode`` it fails (500). Level 1 keeps the
                                 weights in host RAM and drops the model; ``mode`` ``abort``
                                 (vLLM's default) cuts streams in flight, ``wait`` lets them end
    POST /wake_up[?tags=...]     copies the kept weights back (tags ``weights``, ``kv_cache``;
                                 none: both); 200, empty body
    GET  /is_sleeping            ``{"is_sleeping": bool}``, true until every slept tag is woken

Like vLLM, a chat request that arrives while the server sleeps waits (its scheduler is paused)
and runs once it is woken. Sleeping drops the model object; waking builds it again from the kept
copy of the weights, never from the files: ``GET /peer/state`` (for the tests) counts loads from
disk, sleeps and wakes. Level 2 (weights discarded, reloaded by ``collective_rpc``) is not part
of this subset: it is refused with 400. The error wording is ours.

Run as vLLM is run: ``VLLM_SERVER_DEV_MODE=1 python -m tests.peers.vllm_peer serve MODEL_DIR
--port 8000 --enable-sleep-mode``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.peers.tiny_lm import TinyLM

TAGS = ("weights", "kv_cache")


class Server:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.name = args.served_model_name or args.model
        self.lm: TinyLM | None = None
        self.kept: dict[str, Any] | None = None  # the weights in host RAM while asleep
        self.asleep: set[str] = set()  # memory tags not woken yet
        self.awake = asyncio.Event()
        self.awake.set()
        self.abort = asyncio.Event()  # set by a sleep in mode abort: streams in flight end
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.disk_loads = self.sleeps = self.wakes = 0

    async def load(self) -> None:
        self.lm = await asyncio.to_thread(TinyLM, Path(self.args.model))
        self.disk_loads += 1
        print("Application startup complete.", flush=True)

    def drop_weights(self) -> None:
        assert self.lm is not None
        model = self.lm.model
        self.kept = {
            "config": model.config,
            "generation": model.generation_config,
            "state": {key: value.detach().clone() for key, value in model.state_dict().items()},
        }
        self.lm.model = None

    def restore_weights(self) -> None:
        from transformers import AutoModelForCausalLM

        assert self.lm is not None and self.kept is not None
        model: Any = AutoModelForCausalLM.from_config(self.kept["config"])
        model.load_state_dict(self.kept["state"])
        model.generation_config = self.kept["generation"]
        self.lm.model = model.eval()
        self.kept = None


SERVER = web.AppKey("server", Server)


def error(status: int, message: str, kind: str = "BadRequestError") -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
    return web.json_response(body, status=status)


async def health(request: web.Request) -> web.Response:
    return web.Response(status=200)


async def models(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    card = {
        "id": server.name,
        "object": "model",
        "created": int(time.time()),
        "owned_by": "vllm",
        "root": server.args.model,
        "parent": None,
        "max_model_len": server.lm.context if server.lm else None,
    }
    return web.json_response({"object": "list", "data": [card]})


async def chat(request: web.Request) -> web.StreamResponse:
    server = request.app[SERVER]
    body = await request.json()
    if body.get("model") not in (None, server.name):
        return error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
    await server.awake.wait()  # the scheduler is paused while asleep: the request waits
    server.in_flight += 1
    server.idle.clear()
    try:
        return await _stream(request, server, body)
    finally:
        server.in_flight -= 1
        if not server.in_flight:
            server.idle.set()


async def _stream(request: web.Request, server: Server, body: dict[str, Any]) -> web.StreamResponse:
    lm = server.lm
    assert lm is not None
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    ids = lm.prompt_ids(body["messages"])
    limit = int(body.get("max_tokens") or 64)
    made = 0

    def event(data: dict[str, Any]) -> bytes:
        return f"data: {json.dumps(data)}\n\n".encode()

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        base = {"id": ident, "object": "chat.completion.chunk", "created": created}
        return event({**base, "model": server.name, "choices": [choice]})

    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(chunk({"role": "assistant", "content": ""}))
    temperature = float(body.get("temperature") if body.get("temperature") is not None else 1.0)
    async for delta, _token in lm.generate(ids, max_new=limit, temperature=temperature):
        if server.abort.is_set():
            return response  # aborted by a sleep: the stream ends without [DONE]
        made += 1
        await response.write(chunk({"content": delta}))
        await asyncio.sleep(server.args.token_delay)
    await response.write(chunk({}, "length" if made >= limit else "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {"prompt_tokens": len(ids), "completion_tokens": made}
        usage["total_tokens"] = len(ids) + made
        await response.write(event({"id": ident, "choices": [], "usage": usage}))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def sleep(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    level = request.query.get("level", "1")
    mode = request.query.get("mode", "abort")
    if not server.args.enable_sleep_mode:
        return error(500, "Sleep mode is not enabled: start the server with --enable-sleep-mode")
    if level != "1" or mode not in ("abort", "wait"):
        return error(400, f"this peer sleeps at level 1 in mode abort or wait, not {level}/{mode}")
    if server.asleep:
        return web.Response(status=200)  # sleeping an already sleeping tag is a no-op
    server.awake.clear()
    if mode == "abort":
        server.abort.set()
    await server.idle.wait()
    server.abort.clear()
    await asyncio.to_thread(server.drop_weights)
    server.asleep = set(TAGS)
    server.sleeps += 1
    return web.Response(status=200)


async def wake_up(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    tags = request.query.getall("tags", []) or list(TAGS)
    if "weights" in tags and "weights" in server.asleep:
        await asyncio.to_thread(server.restore_weights)
    server.asleep -= set(tags)
    if not server.asleep:
        if not server.awake.is_set():
            server.wakes += 1
        server.awake.set()
    return web.Response(status=200)


async def is_sleeping(request: web.Request) -> web.Response:
    return web.json_response({"is_sleeping": bool(request.app[SERVER].asleep)})


async def peer_state(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    counts = {"disk_loads": server.disk_loads, "sleeps": server.sleeps, "wakes": server.wakes}
    return web.json_response({**counts, "is_sleeping": bool(server.asleep), "pid": os.getpid()})


def make_app(args: argparse.Namespace) -> web.Application:
    app = web.Application()
    server = Server(args)
    app[SERVER] = server

    async def start(_app: web.Application) -> None:
        await server.load()  # vLLM listens only once its model is loaded

    app.on_startup.append(start)
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/peer/state", peer_state)
    if os.environ.get("VLLM_SERVER_DEV_MODE") == "1":
        app.router.add_post("/sleep", sleep)
        app.router.add_post("/wake_up", wake_up)
        app.router.add_get("/is_sleeping", is_sleeping)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--served-model-name", default=None)
    parser.add_argument("--enable-sleep-mode", action="store_true")
    parser.add_argument("--token-delay", type=float, default=0.0)
    args = parser.parse_args()
    web.run_app(make_app(args), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
