"""A stand-in for the Ollama server (``ollama serve``, v0.32.15), backed by a tiny real model.

Follows ollama v0.32.15 (github.com/ollama/ollama): ``server/routes.go`` (handlers, error
bodies and status codes, ``streamResponse``), ``server/sched.go`` (runners, ``needsReload``,
expiry), ``envconfig/config.go`` (the environment and the ``server config`` line),
``types/model/name.go`` (names, in ``ollama_names.py``), ``llm/llama_server.go`` (parallel
slots, ``boundedNumPredict``, runner errors) and ``api/types.go`` (``Runner`` options).

What it keeps of Ollama:
- ``POST /api/generate`` and ``/api/chat``: NDJSON streams; an empty prompt or message list loads
  the model, and with ``keep_alive: 0`` unloads it, answering one JSON object with
  ``done_reason`` "load" or "unload". ``keep_alive`` is seconds or a Go duration (negative:
  forever; a string without a unit is a 400); the runner expires ``keep_alive`` after each
  request and leaves ``/api/ps`` a moment later.
- Parallelism: a runner serves ``OLLAMA_NUM_PARALLEL`` requests at once (default 1); the others
  wait for a slot, as on the runner's semaphore. Its KV cache, so ``size``, grows with it.
- Runner options (``num_ctx``, ``num_batch``, ``num_gpu``, ``main_gpu``, ``use_mmap``,
  ``num_thread``): a request whose options differ from the loaded runner's reloads the model
  (``num_gpu`` < 0 never does; ``use_mmap`` left unset matches a runner loaded without it).
- Names: looked up without case; ``/api/ps`` and ``/api/tags`` show the shortest display name in
  the stored case; replies echo the name as sent.
- No reply cap: ``num_predict`` unset or negative generates until the model stops, bounded only
  at 10 x ``num_ctx`` tokens; past the model's window the context shifts and generation goes on.
- Errors: ``{"error": "..."}`` with Ollama's status codes; a runner that fails mid-reply ends
  the stream with an ``{"error": ...}`` line (before any content: a 500 JSON body), and the next
  request reloads it.
- Images (``api/types.go``: ``Message.Images []ImageData``, bytes Go's JSON reads as base64, so
  a string that is not base64 is a 400 ``illegal base64 data at input byte N``): a model whose
  folder has a processor (the tiny LLaVA) is a vision model, gets each message's images before
  its text (``server/prompt.go``), and ``POST /api/show`` lists its ``vision`` capability.
- ``GET /api/ps`` (``size``, ``size_vram``, ``expires_at``, ``context_length``), ``GET
  /api/tags``, ``POST /api/pull`` (a progress stream; an unknown model ends it with an error
  line), ``GET /api/version``, and at start the ``server config`` log line with the environment
  it read, as Ollama logs it.

Configured like Ollama through the environment: ``OLLAMA_HOST``, ``OLLAMA_KEEP_ALIVE`` (default
"5m"), ``OLLAMA_MAX_LOADED_MODELS``, ``OLLAMA_NUM_PARALLEL``, ``OLLAMA_CONTEXT_LENGTH``. Peer-only
settings: ``OLLAMA_PEER_MODELS`` and ``OLLAMA_PEER_REGISTRY`` (``name=folder,...``: installed
models, and models ``/api/pull`` can fetch), ``OLLAMA_PEER_GPU=1`` (models held in VRAM),
``OLLAMA_PEER_TOKEN_DELAY`` (seconds per token), ``OLLAMA_PEER_UNLOAD_DELAY``. For the tests
only: ``GET /peer/state`` (request bodies, loads per model, streams cut short, the most
replies generated at once, requests that waited for a slot) and ``POST /peer/fail``
(``{"after_tokens": N}``: the next reply's runner dies after N tokens).

Not modelled: images sent to a model without vision (a 400 here), the 768 tokens an image
counts for truncation, the automatic context length by VRAM tier (unset ``num_ctx`` is 4096),
the model's own training context as a cap, per-architecture parallel limits, cloud models.

Run: ``python -m tests.peers.ollama_peer serve``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.peers.ollama_names import Name
from tests.peers.tiny_lm import TinyLM, TinyVisionLM

VERSION = "0.32.15"
FOREVER = timedelta(seconds=(2**63 - 1) / 1e9)
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h)")
RUNNER_STOPPED = (
    "model runner has unexpectedly stopped, this may be due to resource limitations or an "
    "internal error, check ollama server logs for details"
)
OPEN_ENDED_MULTIPLIER = 10  # llm/llama_server.go: openEndedGenerationContextMultiplier
KV_BYTES_PER_TOKEN = 2048  # the tiny model's stand-in for a KV cache entry


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


def env_uint(key: str, default: int) -> int:
    """envconfig.Uint: an unsigned integer, or the default (with a warning) when it is not one."""
    text = os.environ.get(key, "").strip().strip("\"'")
    if not text:
        return default
    if not text.isdigit():
        log(f'level=WARN msg="invalid environment variable, using default" key={key} value={text}')
        return default
    return int(text)


def log(text: str) -> None:
    """Ollama's slog text lines, on stderr."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    print(f"time={stamp}Z {text}", file=sys.stderr, flush=True)


def _models(variable: str) -> dict[tuple[str, ...], tuple[Name, Path]]:
    pairs = [item.split("=", 1) for item in os.environ.get(variable, "").split(",") if item]
    return {Name.parse(n).folded: (Name.parse(n), Path(folder)) for n, folder in pairs}


def _env_float(key: str, default: float) -> float:
    return float(os.environ.get(key) or default)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class RunnerOptions:
    """api.Runner, with the defaults of api.DefaultOptions for what a request leaves out."""

    num_ctx: int
    num_batch: int = 512
    num_gpu: int = -1
    main_gpu: int | None = None
    use_mmap: bool | None = None
    num_thread: int = 0

    @classmethod
    def of(cls, options: dict[str, Any], default_ctx: int) -> RunnerOptions:
        def number(key: str, default: int) -> int:
            value = options.get(key)
            return default if value is None else int(value)

        main_gpu, use_mmap = options.get("main_gpu"), options.get("use_mmap")
        return cls(
            num_ctx=max(number("num_ctx", default_ctx), 4),  # getRunner: at least 4
            num_batch=number("num_batch", 512),
            num_gpu=number("num_gpu", -1),
            main_gpu=None if main_gpu is None else int(main_gpu),
            use_mmap=None if use_mmap is None else bool(use_mmap),
            num_thread=number("num_thread", 0),
        )

    def differs(self, new: RunnerOptions) -> bool:
        """needsReload's comparison of the loaded runner's options with a request's (an unset
        ``use_mmap`` on both sides is equal: the runner chose it, the request left it)."""
        old = self
        if new.num_gpu < 0:  # "Don't reload runner if num_gpu=-1 was provided"
            old, new = replace(old, num_gpu=-1), replace(new, num_gpu=-1)
        return old != new


def is_vision(folder: Path) -> bool:
    return (folder / "processor_config.json").is_file()


@dataclass
class Runner:
    name: Name
    lm: TinyLM | TinyVisionLM
    options: RunnerOptions
    parallel: int
    size: int
    size_vram: int
    expires_at: datetime
    slots: asyncio.Semaphore
    busy: int = 0
    alive: bool = True  # False once its process "died": the next request reloads it
    timer: asyncio.TimerHandle | None = None
    idle: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Peer:
    installed: dict[tuple[str, ...], tuple[Name, Path]] = field(
        default_factory=lambda: _models("OLLAMA_PEER_MODELS")
    )
    registry: dict[tuple[str, ...], tuple[Name, Path]] = field(
        default_factory=lambda: _models("OLLAMA_PEER_REGISTRY")
    )
    runners: dict[tuple[str, ...], Runner] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    loads: dict[str, int] = field(default_factory=dict)
    cut_short: int = 0
    generating: int = 0
    most_at_once: int = 0
    waited_for_slot: int = 0
    fail_after: int | None = None
    gpu: bool = field(default_factory=lambda: os.environ.get("OLLAMA_PEER_GPU") == "1")
    token_delay: float = field(default_factory=lambda: _env_float("OLLAMA_PEER_TOKEN_DELAY", 0))
    unload_delay: float = field(default_factory=lambda: _env_float("OLLAMA_PEER_UNLOAD_DELAY", 0.2))
    # envconfig: 0 loaded models means 3 per GPU; 0 parallel requests means 1 (sched.go)
    max_loaded: int = field(default_factory=lambda: env_uint("OLLAMA_MAX_LOADED_MODELS", 0) or 3)
    parallel: int = field(default_factory=lambda: max(env_uint("OLLAMA_NUM_PARALLEL", 1), 1))
    default_ctx: int = field(default_factory=lambda: env_uint("OLLAMA_CONTEXT_LENGTH", 0) or 4096)
    default_keep_alive: str = field(
        default_factory=lambda: os.environ.get("OLLAMA_KEEP_ALIVE", "5m")
    )
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def find(self, model: str) -> tuple[Name, Path] | None:
        """getExistingName: the installed model this name means, compared without case."""
        return self.installed.get(Name.parse(model).folded)

    def digest(self, name: Name) -> str:
        return hashlib.sha256(name.shortest().lower().encode()).hexdigest()

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": "gpt2",
            "families": ["gpt2"],
            "parameter_size": "0.1M",
            "quantization_level": "F32",
        }

    async def runner(self, name: Name, folder: Path, options: RunnerOptions) -> Runner:
        """The scheduler: reuse a loaded runner unless it needs a reload, evict LRU."""
        key = name.folded
        async with self.lock:
            current = self.runners.get(key)
            if current is not None and current.alive and not current.options.differs(options):
                if current.timer is not None:
                    current.timer.cancel()
                    current.timer = None
                return current
            if current is not None:
                while current.busy:  # a reload waits for the runner's requests to finish
                    current.idle.clear()
                    await current.idle.wait()
                self._drop(key)
            while len(self.runners) >= self.max_loaded:
                self._drop(min(self.runners.values(), key=lambda r: r.expires_at).name.folded)
            kind = TinyVisionLM if is_vision(folder) else TinyLM
            lm: TinyLM | TinyVisionLM = await asyncio.to_thread(kind, folder)
            size = lm.param_bytes + options.num_ctx * self.parallel * KV_BYTES_PER_TOKEN
            runner = Runner(
                name=name,
                lm=lm,
                options=options,
                parallel=self.parallel,
                size=size,
                size_vram=size if self.gpu else 0,
                expires_at=datetime.now().astimezone(),
                slots=asyncio.Semaphore(self.parallel),
            )
            self.runners[key] = runner
            shown = name.shortest()
            self.loads[shown] = self.loads.get(shown, 0) + 1
            return runner

    def release(self, runner: Runner, keep_alive: timedelta) -> None:
        """After a request: the runner expires keep_alive from now (never, if negative)."""
        runner.expires_at = datetime.now().astimezone() + keep_alive
        if runner.timer is not None:
            runner.timer.cancel()
            runner.timer = None
        if keep_alive != FOREVER:
            loop = asyncio.get_running_loop()
            runner.timer = loop.call_later(keep_alive.total_seconds(), self.expire, runner)

    def expire(self, runner: Runner) -> None:
        """Expired runners leave /api/ps a moment later, as Ollama unloads in the background."""
        if self.runners.get(runner.name.folded) is not runner:
            return
        runner.expires_at = datetime.now().astimezone()
        loop = asyncio.get_running_loop()
        runner.timer = loop.call_later(self.unload_delay, self._drop, runner.name.folded)

    def _drop(self, key: tuple[str, ...]) -> None:
        runner = self.runners.pop(key, None)
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
    try:
        images = _images(body) if chat else []
    except BadRequest as exc:
        return error(400, str(exc))
    model = str(body.get("model") or "")
    if not Name.parse(model).valid:  # parseAndValidateModelRef
        return error(400, "model is required") if chat else error(404, f"model '{model}' not found")
    found = peer.find(model)
    if found is None:
        return error(404, f"model '{model}' not found")
    name, folder = found
    empty = not body.get("messages") if chat else not body.get("prompt")
    reply: dict[str, Any] = {"model": model, "created_at": _now()}  # the name as sent
    if chat:
        reply["message"] = {"role": "assistant", "content": ""}
    else:
        reply["response"] = ""
    if empty and "keep_alive" in body and keep_alive == timedelta(0):
        runner = peer.runners.get(name.folded)
        if runner is not None:
            peer.expire(runner)
        return web.json_response({**reply, "done": True, "done_reason": "unload"})
    options = body.get("options") or {}
    if not isinstance(options, dict):
        return error(400, "json: cannot unmarshal options into Go value of type map[string]any")
    try:
        wanted = RunnerOptions.of(options, peer.default_ctx)
    except (TypeError, ValueError) as exc:
        return error(500, f"invalid option: {exc}")
    runner = await peer.runner(name, folder, wanted)
    if empty:
        peer.release(runner, keep_alive)
        return web.json_response({**reply, "done": True, "done_reason": "load"})
    if any(images) and not isinstance(runner.lm, TinyVisionLM):
        peer.release(runner, keep_alive)
        return error(400, f"{model!r} does not support vision (not modelled: the peer refuses)")
    runner.busy += 1
    try:
        if isinstance(runner.lm, TinyVisionLM):
            return await _vision_chat(request, runner.lm, body, images, reply)
        return await _stream(request, peer, runner, body, reply, chat=chat)
    finally:
        runner.busy -= 1
        if not runner.busy:
            runner.idle.set()
        peer.release(runner, keep_alive)


def _images(body: dict[str, Any]) -> list[list[bytes]]:
    """Each message's ``images`` as bytes; Go's JSON decoding of ``[]ImageData`` refuses what
    is not standard base64."""
    found: list[list[bytes]] = []
    for message in body.get("messages") or []:
        own = []
        for text in message.get("images") or []:
            try:
                own.append(base64.b64decode(str(text), validate=True))
            except (binascii.Error, ValueError):
                bad = next((i for i, c in enumerate(str(text)) if c not in _B64), len(text))
                raise BadRequest(f"illegal base64 data at input byte {bad}") from None
        found.append(own)
    return found


_B64 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


async def _vision_chat(
    request: web.Request,
    lm: TinyVisionLM,
    body: dict[str, Any],
    images: list[list[bytes]],
    reply: dict[str, Any],
) -> web.StreamResponse:
    """A vision model's streamed reply (one NDJSON part per delta, then the final part)."""
    options = body.get("options") or {}
    asked = int(options.get("num_predict", -1))
    limit = 32 if asked < 0 else asked
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    count = 0
    async for delta in lm.chat(body["messages"], images, max_new=limit):
        count += 1
        part = {**reply, "created_at": _now(), "done": False}
        part["message"] = {"role": "assistant", "content": delta}
        await response.write(json.dumps(part).encode() + b"\n")
    final = {**reply, "created_at": _now(), "done": True, "done_reason": "stop"}
    final.update(prompt_eval_count=1, eval_count=count)
    await response.write(json.dumps(final).encode() + b"\n")
    await response.write_eof()
    return response


async def show(request: web.Request) -> web.Response:
    """``POST /api/show``: the model's details and capabilities (``vision`` for a vision
    model, as ``Model.Capabilities`` finds a projector)."""
    peer = request.app[PEER]
    try:
        body = await _body(request)
    except BadRequest as exc:
        return error(400, str(exc))
    model = str(body.get("model") or body.get("name") or "")
    if not model:
        return error(400, "model is required")
    found = peer.find(model)
    if found is None:
        return error(404, f"model '{model}' not found")
    capabilities = ["completion", "vision"] if is_vision(found[1]) else ["completion"]
    return web.json_response(
        {
            "modelfile": "",
            "template": "",
            "details": peer.details(),
            "model_info": {},
            "capabilities": capabilities,
            "modified_at": _now(),
        }
    )


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
    ids = ids[-runner.options.num_ctx :]
    bound = OPEN_ENDED_MULTIPLIER * runner.options.num_ctx  # boundedNumPredict
    asked = int(options.get("num_predict", -1))
    limit = bound if asked < 0 or asked > bound else asked
    if runner.slots.locked():
        peer.waited_for_slot += 1
    async with runner.slots:  # one of OLLAMA_NUM_PARALLEL slots, or wait for one
        peer.generating += 1
        peer.most_at_once = max(peer.most_at_once, peer.generating)
        try:
            return await _generate(request, peer, runner, body, ids, limit, reply, chat=chat)
        finally:
            peer.generating -= 1


async def _generate(
    request: web.Request,
    peer: Peer,
    runner: Runner,
    body: dict[str, Any],
    ids: list[int],
    limit: int,
    reply: dict[str, Any],
    *,
    chat: bool,
) -> web.StreamResponse:
    """Stream the tokens; headers go out with the first one, as gin's c.Stream sends them."""
    options = body.get("options") or {}
    streaming = body.get("stream", True) is not False
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    fail_after, peer.fail_after = peer.fail_after, None
    text, count, reason = "", 0, "stop"
    started = asyncio.get_running_loop().time()
    try:
        async for delta in _tokens(runner.lm, ids, limit, options, peer.token_delay):
            if fail_after is not None and count >= fail_after:
                return await _runner_died(request, peer, runner, response)
            count += 1
            text += delta
            if streaming:
                if not response.prepared:
                    await response.prepare(request)
                part = {**reply, "created_at": _now(), "done": False}
                part["message" if chat else "response"] = (
                    {"role": "assistant", "content": delta} if chat else delta
                )
                await response.write(json.dumps(part).encode() + b"\n")
        if fail_after is not None:
            return await _runner_died(request, peer, runner, response)
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
    if not response.prepared:
        await response.prepare(request)
    await response.write(json.dumps(final).encode() + b"\n")
    await response.write_eof()
    return response


async def _tokens(
    lm: TinyLM, ids: list[int], limit: int, options: dict[str, Any], delay: float
) -> Any:
    """Up to ``limit`` tokens; past the model's window the context shifts (keeps the latest
    half) and generation goes on, as Ollama's does, until the model stops or the limit."""
    window = max(lm.context // 2, 1)
    context, produced = list(ids), 0
    while produced < limit:
        step = min(window, limit - produced)
        made = 0
        async for delta, token in lm.generate(
            context[-window:],
            max_new=step,
            temperature=float(options.get("temperature", 0.8)),
            seed=int(options.get("seed", 0)) + produced,
        ):
            made += 1
            context.append(token)
            yield delta
            if delay:
                await asyncio.sleep(delay)
        produced += made
        if made < step:
            return  # end of sequence


async def _runner_died(
    request: web.Request, peer: Peer, runner: Runner, response: web.StreamResponse
) -> web.StreamResponse:
    """streamResponse: an error after content is one more line; before any, a JSON 500."""
    runner.alive = False
    log(f'level=ERROR msg="post predict" error="{RUNNER_STOPPED}"')
    if not response.prepared:
        return error(500, RUNNER_STOPPED)
    await response.write(json.dumps({"error": RUNNER_STOPPED}).encode() + b"\n")
    await response.write_eof()
    return response


async def ps(request: web.Request) -> web.Response:
    peer = request.app[PEER]
    models = [
        {
            "name": runner.name.shortest(),
            "model": runner.name.shortest(),
            "size": runner.size,
            "digest": peer.digest(runner.name),
            "details": peer.details(),
            "expires_at": runner.expires_at.isoformat(),
            "size_vram": runner.size_vram,
            "context_length": runner.options.num_ctx,
        }
        for runner in sorted(peer.runners.values(), key=lambda r: r.expires_at, reverse=True)
    ]
    return web.json_response({"models": models})


async def tags(request: web.Request) -> web.Response:
    peer = request.app[PEER]
    models = []
    for name, folder in sorted(peer.installed.values(), key=lambda item: item[0].shortest()):
        size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
        modified = datetime.fromtimestamp(folder.stat().st_mtime).astimezone().isoformat()
        models.append(
            {
                "name": name.shortest(),
                "model": name.shortest(),
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
    name = Name.parse(model)
    if not name.valid:
        return error(400, "invalid model name")
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)

    async def send(part: dict[str, Any]) -> None:
        await response.write(json.dumps(part).encode() + b"\n")

    await send({"status": "pulling manifest"})
    found = peer.registry.get(name.folded)
    if found is None:
        await send({"error": "pull model manifest: file does not exist"})
    else:
        folder = found[1]
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
        peer.installed[name.folded] = (name, folder)
    await response.write_eof()
    return response


async def version(request: web.Request) -> web.Response:
    return web.json_response({"version": VERSION})


async def root(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running")


async def peer_state(request: web.Request) -> web.Response:
    peer = request.app[PEER]
    return web.json_response(
        {
            "requests": peer.requests,
            "loads": peer.loads,
            "cut_short": peer.cut_short,
            "parallel": peer.parallel,
            "most_at_once": peer.most_at_once,
            "waited_for_slot": peer.waited_for_slot,
        }
    )


async def peer_fail(request: web.Request) -> web.Response:
    """Test hook: the next reply's runner dies after ``after_tokens`` tokens."""
    body = await request.json()
    request.app[PEER].fail_after = int(body["after_tokens"])
    return web.json_response({})


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
    app.router.add_post("/api/show", show)
    app.router.add_get("/peer/state", peer_state)
    app.router.add_post("/peer/fail", peer_fail)
    return app


def server_config(host: str, port: str) -> str:
    """envconfig.Values() as Serve logs it: Go's map formatting, keys sorted."""
    values = {
        "OLLAMA_CONTEXT_LENGTH": str(env_uint("OLLAMA_CONTEXT_LENGTH", 0)),
        "OLLAMA_HOST": f"http://{host}:{port}",
        "OLLAMA_KEEP_ALIVE": os.environ.get("OLLAMA_KEEP_ALIVE", "5m0s"),
        "OLLAMA_MAX_LOADED_MODELS": str(env_uint("OLLAMA_MAX_LOADED_MODELS", 0)),
        "OLLAMA_NUM_PARALLEL": str(env_uint("OLLAMA_NUM_PARALLEL", 1)),
    }
    pairs = " ".join(f"{key}:{value}" for key, value in sorted(values.items()))
    return f'level=INFO source=routes.go:1951 msg="server config" env="map[{pairs}]"'


def main() -> None:
    if sys.argv[1:] != ["serve"]:
        sys.exit("usage: python -m tests.peers.ollama_peer serve")
    host, _, port = os.environ.get("OLLAMA_HOST", "127.0.0.1:11434").rpartition(":")
    host = host or "127.0.0.1"
    log(server_config(host, port))
    log(f'level=INFO source=routes.go:2008 msg="Listening on {host}:{port} (version {VERSION})"')
    web.run_app(create_app(), host=host, port=int(port), print=None)


if __name__ == "__main__":
    main()
