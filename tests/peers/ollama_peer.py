"""A stand-in for the Ollama server (``ollama serve``, 0.12 series), backed by a tiny real model.

It follows Ollama's HTTP API as its docs (docs/api.md, docs/api/errors.mdx) and its server
(server/routes.go, api/types.go) define it: ``POST /api/generate`` and ``/api/chat`` (NDJSON
streams; an empty prompt or message list loads the model, and with ``keep_alive: 0`` unloads it,
answering one JSON object with ``done_reason`` "load" or "unload"), ``keep_alive`` as a number of
seconds or a Go duration string (negative: forever; a string without a unit is a 400), a runner
that expires ``keep_alive`` after each request and leaves ``/api/ps`` a moment after being
expired, a reload when ``num_ctx`` changes, ``GET /api/ps`` (``size``, ``size_vram``,
``expires_at``, ``context_length``), ``GET /api/tags``, ``POST /api/pull`` (a progress stream;
an unknown model ends it with an error line), ``GET /api/version`` and Ollama's error bodies
``{"error": "..."}`` with its status codes.

Configured like Ollama through the environment: ``OLLAMA_HOST`` (bind address),
``OLLAMA_KEEP_ALIVE`` (default "5m"), ``OLLAMA_MAX_LOADED_MODELS``. Peer-only settings:
``OLLAMA_PEER_MODELS`` and ``OLLAMA_PEER_REGISTRY`` (``name=folder,...``: installed models, and
models ``/api/pull`` can fetch), ``OLLAMA_PEER_GPU=1`` (report models as held in VRAM, as on a
GPU host), ``OLLAMA_PEER_TOKEN_DELAY`` (seconds per token), ``OLLAMA_PEER_UNLOAD_DELAY``. For the
tests only: ``GET /peer/state`` (every request body seen, loads per model, streams cut short).

Run: ``python -m tests.peers.ollama_peer serve``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.peers.tiny_lm import TinyLM

VERSION = "0.12.6"
FOREVER = timedelta(seconds=(2**63 - 1) / 1e9)
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h)")


class BadRequest(Exception):
    pass


def parse_keep_alive(value: Any) -> timedelta:
    """api.Duration.UnmarshalJSON: seconds as a number, or time.ParseDuration's strings."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadRequest(f"Unsupported type: '{type(value).__name__}'")
    if isinstance(value, int | float):
        return FOREVER if value < 0 else timedelta(seconds=value)
    text, sign = value, 1.0
    if text[:1] in "+-":
        sign, text = (-1.0 if text[0] == "-" else 1.0), text[1:]
    if text == "0":
        return timedelta(0)
    parts = _PART.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        unit = "missing unit" if text.replace(".", "").isdigit() else "invalid duration"
        raise BadRequest(f'time: {unit} in duration "{value}"')
    seconds = sign * sum(float(n) * _UNITS[u] for n, u in parts)
    return FOREVER if seconds < 0 else timedelta(seconds=seconds)


def canonical(name: str) -> str:
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _models(variable: str) -> dict[str, Path]:
    pairs = [item.split("=", 1) for item in os.environ.get(variable, "").split(",") if item]
    return {canonical(name): Path(folder) for name, folder in pairs}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Runner:
    name: str
    lm: TinyLM
    num_ctx: int
    size: int
    size_vram: int
    expires_at: datetime
    busy: int = 0
    timer: asyncio.TimerHandle | None = None


@dataclass
class Peer:
    installed: dict[str, Path] = field(default_factory=lambda: _models("OLLAMA_PEER_MODELS"))
    registry: dict[str, Path] = field(default_factory=lambda: _models("OLLAMA_PEER_REGISTRY"))
    runners: dict[str, Runner] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    loads: dict[str, int] = field(default_factory=dict)
    cut_short: int = 0
    gpu: bool = os.environ.get("OLLAMA_PEER_GPU") == "1"
    token_delay: float = float(os.environ.get("OLLAMA_PEER_TOKEN_DELAY", "0"))
    unload_delay: float = float(os.environ.get("OLLAMA_PEER_UNLOAD_DELAY", "0.2"))
    max_loaded: int = int(os.environ.get("OLLAMA_MAX_LOADED_MODELS", "3"))
    default_keep_alive: str = os.environ.get("OLLAMA_KEEP_ALIVE", "5m")
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def digest(self, name: str) -> str:
        return hashlib.sha256(name.encode()).hexdigest()

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": "gpt2",
            "families": ["gpt2"],
            "parameter_size": "0.1M",
            "quantization_level": "F32",
        }

    async def runner(self, name: str, num_ctx: int) -> Runner:
        """Ollama's scheduler: reuse a loaded runner, reload on another num_ctx, evict LRU."""
        async with self.lock:
            current = self.runners.get(name)
            if current is not None and current.num_ctx == num_ctx:
                if current.timer is not None:
                    current.timer.cancel()
                    current.timer = None
                return current
            if current is not None:
                self._drop(name)
            while len(self.runners) >= self.max_loaded:
                self._drop(min(self.runners.values(), key=lambda r: r.expires_at).name)
            lm = await asyncio.to_thread(TinyLM, self.installed[name])
            size = lm.param_bytes + num_ctx * 2048  # weights plus a KV cache for num_ctx
            runner = Runner(
                name, lm, num_ctx, size, size if self.gpu else 0, datetime.now().astimezone()
            )
            self.runners[name] = runner
            self.loads[name] = self.loads.get(name, 0) + 1
            return runner

    def release(self, runner: Runner, keep_alive: timedelta) -> None:
        """After a request: the runner expires keep_alive from now (never, if negative)."""
        runner.expires_at = datetime.now().astimezone() + keep_alive
        if runner.timer is not None:
            runner.timer.cancel()
        if keep_alive != FOREVER:
            loop = asyncio.get_running_loop()
            runner.timer = loop.call_later(keep_alive.total_seconds(), self.expire, runner.name)

    def expire(self, name: str) -> None:
        """Expired runners leave /api/ps a moment later, as Ollama unloads in the background."""
        runner = self.runners.get(name)
        if runner is None:
            return
        runner.expires_at = datetime.now().astimezone()
        loop = asyncio.get_running_loop()
        runner.timer = loop.call_later(self.unload_delay, self._drop, name)

    def _drop(self, name: str) -> None:
        runner = self.runners.pop(name, None)
        if runner is not None and runner.timer is not None:
            runner.timer.cancel()


PEER = web.AppKey("peer", Peer)


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        raise BadRequest("missing request body")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    if not isinstance(body, dict):
        raise BadRequest("json: cannot unmarshal into Go value of type api.Request")
    request.app[PEER].requests.append({"path": request.path, "body": body})
    return body


async def generate(request: web.Request) -> web.StreamResponse:
    return await _complete(request, chat=False)


async def chat(request: web.Request) -> web.StreamResponse:
    return await _complete(request, chat=True)


async def _complete(request: web.Request, *, chat: bool) -> web.StreamResponse:
    peer = request.app[PEER]
    try:
        body = await _body(request)
        keep_alive = parse_keep_alive(body.get("keep_alive", peer.default_keep_alive))
    except BadRequest as exc:
        return error(400, str(exc))
    model = str(body.get("model", ""))
    name = canonical(model)
    if not model or name not in peer.installed:
        return error(404, f"model '{model}' not found")
    empty = not body.get("messages") if chat else not body.get("prompt")
    reply: dict[str, Any] = {"model": model, "created_at": _now()}
    if chat:
        reply["message"] = {"role": "assistant", "content": ""}
    else:
        reply["response"] = ""
    if empty and "keep_alive" in body and keep_alive == timedelta(0):
        if name in peer.runners:
            peer.expire(name)
        return web.json_response({**reply, "done": True, "done_reason": "unload"})
    options = body.get("options") or {}
    runner = await peer.runner(name, int(options.get("num_ctx", 4096)))
    if empty:
        peer.release(runner, keep_alive)
        return web.json_response({**reply, "done": True, "done_reason": "load"})
    runner.busy += 1
    try:
        return await _stream(request, peer, runner, body, reply, chat=chat)
    finally:
        runner.busy -= 1
        peer.release(runner, keep_alive)


async def _stream(
    request: web.Request,
    peer: Peer,
    runner: Runner,
    body: dict[str, Any],
    reply: dict[str, Any],
    *,
    chat: bool,
) -> web.StreamResponse:
    lm, options = runner.lm, body.get("options") or {}
    if chat:
        ids = lm.prompt_ids(
            [{"role": m["role"], "content": m["content"]} for m in body["messages"]]
        )
    else:
        ids = lm.text_ids(str(body["prompt"]))
    ids = ids[-runner.num_ctx :]
    limit = int(options.get("num_predict", 128))
    limit = min(limit if limit >= 0 else 128, lm.context // 2)
    streaming = body.get("stream", True) is not False
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    if streaming:
        await response.prepare(request)
    text, count, reason = "", 0, "stop"
    started = asyncio.get_running_loop().time()
    try:
        async for delta, _token in lm.generate(
            ids,
            max_new=limit,
            temperature=float(options.get("temperature", 0.8)),
            seed=int(options.get("seed", 0)),
        ):
            count += 1
            text += delta
            if streaming:
                part = {**reply, "created_at": _now(), "done": False}
                part["message" if chat else "response"] = (
                    {"role": "assistant", "content": delta} if chat else delta
                )
                await response.write(json.dumps(part).encode() + b"\n")
            if peer.token_delay:
                await asyncio.sleep(peer.token_delay)
        if count >= limit:
            reason = "length"
    except (ConnectionResetError, asyncio.CancelledError):
        peer.cut_short += 1  # the client went away: Ollama stops generating
        raise
    elapsed = int((asyncio.get_running_loop().time() - started) * 1e9)
    final = {
        **reply,
        "created_at": _now(),
        "done": True,
        "done_reason": reason,
        "total_duration": elapsed,
        "load_duration": 0,
        "prompt_eval_count": len(ids),
        "eval_count": count,
        "eval_duration": elapsed,
    }
    if not streaming:
        final["message" if chat else "response"] = (
            {"role": "assistant", "content": text} if chat else text
        )
        return web.json_response(final)
    await response.write(json.dumps(final).encode() + b"\n")
    await response.write_eof()
    return response


async def ps(request: web.Request) -> web.Response:
    peer = request.app[PEER]
    models = [
        {
            "name": runner.name,
            "model": runner.name,
            "size": runner.size,
            "digest": peer.digest(runner.name),
            "details": peer.details(),
            "expires_at": runner.expires_at.isoformat(),
            "size_vram": runner.size_vram,
            "context_length": runner.num_ctx,
        }
        for runner in sorted(peer.runners.values(), key=lambda r: r.expires_at, reverse=True)
    ]
    return web.json_response({"models": models})


async def tags(request: web.Request) -> web.Response:
    peer = request.app[PEER]
    models = []
    for name, folder in sorted(peer.installed.items()):
        size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
        modified = datetime.fromtimestamp(folder.stat().st_mtime).astimezone().isoformat()
        models.append(
            {
                "name": name,
                "model": name,
                "modified_at": modified,
                "size": size,
                "digest": peer.digest(name),
                "details": peer.details(),
            }
        )
    return web.json_response({"models": models})


async def pull(request: web.Request) -> web.StreamResponse:
    peer = request.app[PEER]
    try:
        body = await _body(request)
    except BadRequest as exc:
        return error(400, str(exc))
    model = str(body.get("model") or body.get("name") or "")
    name = canonical(model)
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)

    async def send(part: dict[str, Any]) -> None:
        await response.write(json.dumps(part).encode() + b"\n")

    await send({"status": "pulling manifest"})
    folder = peer.registry.get(name)
    if folder is None:
        await send({"error": "pull model manifest: file does not exist"})
    else:
        digest = f"sha256:{peer.digest(name)}"
        total = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
        await send({"status": f"pulling {digest[7:19]}", "digest": digest, "total": total})
        for step in range(1, 5):
            await asyncio.sleep(0.01)
            completed = math.ceil(total * step / 4)
            await send(
                {
                    "status": f"pulling {digest[7:19]}",
                    "digest": digest,
                    "total": total,
                    "completed": completed,
                }
            )
        for status in ("verifying sha256 digest", "writing manifest", "success"):
            await send({"status": status})
        peer.installed[name] = folder
    await response.write_eof()
    return response


async def version(request: web.Request) -> web.Response:
    return web.json_response({"version": VERSION})


async def root(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running")


async def peer_state(request: web.Request) -> web.Response:
    peer = request.app[PEER]
    return web.json_response(
        {"requests": peer.requests, "loads": peer.loads, "cut_short": peer.cut_short}
    )


def create_app() -> web.Application:
    app = web.Application()
    app[PEER] = Peer()
    app.router.add_get("/", root)
    app.router.add_get("/api/version", version)
    app.router.add_get("/api/tags", tags)
    app.router.add_get("/api/ps", ps)
    app.router.add_post("/api/generate", generate)
    app.router.add_post("/api/chat", chat)
    app.router.add_post("/api/pull", pull)
    app.router.add_get("/peer/state", peer_state)
    return app


def main() -> None:
    if sys.argv[1:] != ["serve"]:
        sys.exit("usage: python -m tests.peers.ollama_peer serve")
    host, _, port = os.environ.get("OLLAMA_HOST", "127.0.0.1:11434").rpartition(":")
    print(f"Listening on {host}:{port} (version {VERSION})", flush=True)
    web.run_app(create_app(), host=host or "127.0.0.1", port=int(port), print=None)


if __name__ == "__main__":
    main()
