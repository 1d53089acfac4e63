"""A stand-in for NVIDIA PersonaPlex's server, ``python -m moshi.server`` (NVIDIA/personaplex).

It follows ``moshi-personaplex`` 0.1.0 at NVIDIA/personaplex@3428dfd (2026-03-02; the server
last changed in 9949e7b): ``moshi/moshi/server.py`` (``main``, ``ServerState.handle_chat``) and
``moshi/moshi/models/lm.py`` (``LMGen.step_system_prompts_async``), as described in
``shared/reference/personaplex.md``:

- it listens on every interface whatever ``--host`` says, and refuses to start without
  ``--voice-prompt-dir`` or with ``--static`` other than ``none`` (the real one would fetch
  ``voices.tgz``/``dist.tgz`` from the hub); it prints "Access the Web UI directly at" when ready;
- a plain ``GET /api/chat`` answers 400 (no upgrade) without touching the model lock;
- ``/api/chat?text_prompt=..&voice_prompt=..`` upgrades at once and, *before* taking its one
  global lock, reads the persona into state that every connection shares (the generator's voice
  prompt and text-prompt tokens, the text wrapped in ``<system>`` tags); only then does it wait,
  silently, on the lock (one conversation at a time). So a connection queued behind another
  starts with the persona of whoever connected *last*, and one that connects during another's
  prefill changes the rest of that prefill; ``prefills`` in ``GET /peer/state`` records, for
  each conversation that started, the persona asked for and the one used (``wrong_persona``
  counts those that differ);
- refusals, each closing the socket with no handshake and no error frame (the real handler
  raises): a missing ``voice_prompt`` (KeyError) or an unknown one (FileNotFoundError) before
  the persona is written and before the lock; a missing ``text_prompt`` (KeyError) after the
  voice is written; ``seed`` in the query (KeyError: it reads ``request["seed"]``) *after* the
  whole persona is written, still before the lock; an empty text
  prompt (``None`` tokens: TypeError) inside the lock, once the voice prompt and the first
  silence have been stepped;
- prefill under the lock: voice-prompt frames, 6 silence frames, one step per text-prompt
  token, 6 silence frames, each step first polling the socket for 10 ms and throwing away what
  the client sent (a closed socket ends the prefill); then the single byte 0x00 if the client
  is still there;
- only 0x01 Ogg Opus is read (other kinds are logged as unknown); a stream whose first page is
  not the OpusHead BOS page ends the session (the real Ogg reader dies);
- one 80 ms output frame per 80 ms input frame, Ogg Opus pages as separate 0x01 messages, and
  0x02 text pieces (SentencePiece, "▁" as a space; ids 0 and 3 never sent).

The model is a tiny random Moshi LM + Mimi codec built by the PyPI ``moshi`` package (no weights),
and a tiny SentencePiece model trained at start; audio is Ogg Opus by sphn 0.2 (ours), where
the real server pins sphn<0.2 (tests/test_personaplex_opus.py checks the two interoperate).
Test knobs: ``--hang-after N`` stops answering (the socket stays open) after N output frames of
a session, like a stuck GPU step. ``GET /peer/state`` reports counters for the tests and
``GET /peer/wait?NAME=N`` answers once counter NAME has reached N (so tests wait on an event).

Run: ``python -m tests.peers.personaplex_peer --port 8998 --static none --voice-prompt-dir DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_TORCH_COMPILE", "1")  # compiling a tiny model costs seconds a step

import numpy as np
import sphn
from aiohttp import WSMsgType, web

from services.duplex_protocol import (
    FRAME_SAMPLES,
    SAMPLE_RATE,
    Audio,
    Handshake,
    Text,
    ogg_pages,
    starts_with_opus_head,
)

log = logging.getLogger("personaplex_peer")
SILENCE_STEPS = 6
TRAINING_TEXT = [
    "you are a friendly patient tutor who helps students learn fractions and algebra",
    "hello there how are you today let us talk about maths and science step by step",
]


class TinyMoshi:
    """Tiny random Mimi + LM and a tiny tokenizer; every call runs on one worker thread."""

    def __init__(self, seed: int) -> None:
        import sentencepiece
        import torch
        from moshi.models import loaders
        from moshi.models.lm import LMGen

        torch.set_num_threads(1)
        torch.manual_seed(seed)
        model = io.BytesIO()
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(TRAINING_TEXT * 20),
            model_writer=model,
            vocab_size=60,
            hard_vocab_limit=False,
            user_defined_symbols=["<system>"],  # prompts come wrapped in it: one piece each
            minloglevel=2,
        )
        self.tokenizer = sentencepiece.SentencePieceProcessor(model_proto=model.getvalue())
        dim = 32
        seanet = {**loaders._seanet_kwargs, "dimension": dim, "n_filters": 4}
        quantizer = {
            **loaders._quantizer_kwargs,
            "dimension": 16,
            "bins": 64,
            "n_q": 8,
            "input_dimension": dim,
            "output_dimension": dim,
        }
        transformer = {
            **loaders._transformer_kwargs,
            "d_model": dim,
            "num_heads": 2,
            "num_layers": 1,
            "dim_feedforward": 64,
            "input_dimension": dim,
            "output_dimensions": [dim],
        }
        mimi_config = {
            **loaders._mimi_config,
            "seanet": seanet,
            "quantizer": quantizer,
            "transformer": transformer,
        }
        self.mimi = loaders.get_mimi(None, mimi_config=mimi_config, device="cpu")
        lm_kwargs = {
            **loaders._lm_kwargs,
            "dim": dim,
            "num_layers": 2,
            "num_heads": 2,
            "card": 64,
            "text_card": self.tokenizer.get_piece_size(),
            "depformer_dim": 16,
            "depformer_num_layers": 1,
            "depformer_num_heads": 2,
            "depformer_dim_feedforward": 32,
            "context": 300,
        }
        lm = loaders.get_moshi_lm(None, lm_kwargs=lm_kwargs, device="cpu", dtype=torch.float32)
        self.gen = LMGen(lm, temp=0.8, temp_text=0.7, top_k=250, top_k_text=25)
        self._torch = torch
        self.mimi.streaming_forever(1)
        self.gen.streaming_forever(1)
        self._silence = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="model")

    def reset(self) -> None:
        self.mimi.reset_streaming()
        self.gen.reset_streaming()

    def step(self, pcm: np.ndarray | None) -> tuple[np.ndarray | None, str | None]:
        """One 80 ms frame in: (audio frame out or None during the model's delay, text piece)."""
        torch = self._torch
        frame = self._silence if pcm is None else pcm
        with torch.no_grad():
            codes = self.mimi.encode(torch.from_numpy(frame).reshape(1, 1, -1))
            tokens = self.gen.step(codes)
            if tokens is None:
                return None, None
            audio = self.mimi.decode(tokens[:, 1:]).reshape(-1).numpy().astype(np.float32)
        text_id = int(tokens[0, 0, 0])
        piece = None
        if text_id not in (0, 3) and text_id < self.tokenizer.get_piece_size():
            piece = self.tokenizer.id_to_piece(text_id).replace("▁", " ")
        return audio, piece

    def prompt_tokens(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text))


def wrap_with_system_tags(text: str) -> str:
    """The real server's wrapping of a text prompt (``server.py``)."""
    cleaned = text.strip()
    if cleaned.startswith("<system>") and cleaned.endswith("<system>"):
        return cleaned
    return f"<system> {cleaned} <system>"


@dataclass
class SharedPersona:
    """The generator's prompt state, one for all connections (``lm_gen.voice_prompt`` and
    ``lm_gen.text_prompt_tokens`` upstream): written by each connection before the lock, read
    by the prefill under it. ``text`` is kept beside the tokens to report what was used."""

    voice: str | None = None
    text: str | None = None
    tokens: list[int] | None = None


@dataclass
class Counters:
    sessions: int = 0
    handshakes: int = 0
    rejected: list[str] = field(default_factory=list)
    early_messages: int = 0
    early_audio: int = 0
    unknown_kinds: int = 0
    frames_in: int = 0
    frames_out: int = 0
    texts_out: int = 0
    waiting: int = 0
    active: bool = False
    reader_died: int = 0
    connections: int = 0  # upgrades accepted
    wrong_persona: int = 0  # prefills that used another connection's persona
    prefills: list[dict[str, Any]] = field(default_factory=list)


class Rejected(Exception):
    """What the real handler would raise (the socket then closes without a handshake)."""


class Peer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.voices = Path(args.voice_prompt_dir)
        self.model = TinyMoshi(args.seed)
        self.lock = asyncio.Lock()
        self.counters = Counters()
        self.persona = SharedPersona()
        self._watchers: list[asyncio.Future[None]] = []

    def changed(self) -> None:
        """Wake ``/peer/wait`` (synchronous: no await may come between the persona write and
        the lock, as upstream)."""
        watchers, self._watchers = self._watchers, []
        for watcher in watchers:
            if not watcher.done():
                watcher.set_result(None)

    async def until(self, name: str, value: int) -> None:
        while int(getattr(self.counters, name)) < value:
            watcher = asyncio.get_running_loop().create_future()
            self._watchers.append(watcher)
            await watcher

    async def run(self, pcm: np.ndarray | None) -> tuple[np.ndarray | None, str | None]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.model.pool, self.model.step, pcm)

    def read_persona(self, query: Any) -> None:
        """``handle_chat`` before its lock: check the voice, then write voice and text into the
        shared state, then read ``seed`` (raising after the write). Raises Rejected."""
        if "voice_prompt" not in query:
            raise Rejected("KeyError: 'voice_prompt'")
        voice = self.voices / query["voice_prompt"]
        if not voice.is_file():
            raise Rejected(f"FileNotFoundError: {voice}")
        self.persona.voice = query["voice_prompt"]
        if "text_prompt" not in query:
            raise Rejected("KeyError: 'text_prompt'")  # after the voice was written
        text = query["text_prompt"]
        self.persona.text = text or None
        tokens = self.model.prompt_tokens(wrap_with_system_tags(text)) if text else None
        self.persona.tokens = tokens
        if "seed" in query:
            raise Rejected("KeyError: 'seed'")  # the real code reads request["seed"]

    async def poll(self, ws: web.WebSocketResponse) -> bool:
        """The prefill's ``is_alive``: read (and throw away) one message for up to 10 ms."""
        if ws.closed:
            return False
        try:
            early = await ws.receive(timeout=0.01)
        except TimeoutError:
            return True
        if early.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING, WSMsgType.ERROR):
            return False
        self.counters.early_messages += 1
        if early.type is WSMsgType.BINARY and early.data[:1] == b"\x01":
            self.counters.early_audio += 1
        return True

    async def prefill(self, ws: web.WebSocketResponse, used: dict[str, str | None]) -> bool:
        """``step_system_prompts_async``: each phase reads the shared persona when it starts (into
        ``used``) and stops at the first failed poll. False when the client left."""
        used["voice"] = self.persona.voice
        alive = True
        for _ in range(self.args.voice_frames):
            if not (alive := await self.poll(ws)):
                break
            await self.run(None)
        for _ in range(SILENCE_STEPS):
            if not (alive := await self.poll(ws)):
                break
            await self.run(None)
        used["text"], tokens = self.persona.text, self.persona.tokens
        if tokens is None:
            raise Rejected("TypeError: 'NoneType' object is not iterable")  # empty text prompt
        for _ in tokens:
            if not (alive := await self.poll(ws)):
                break
            await self.run(None)
        for _ in range(SILENCE_STEPS):
            if not (alive := await self.poll(ws)):
                break
            await self.run(None)
        return alive and await self.poll(ws)


PEER = web.AppKey("peer", Peer)


async def chat(request: web.Request) -> web.StreamResponse:
    peer = request.app[PEER]
    ws = web.WebSocketResponse(max_msg_size=1 << 22)
    await ws.prepare(request)  # a plain GET (no upgrade) is answered 400 right here
    counters = peer.counters
    counters.connections += 1
    peer.changed()
    try:
        peer.read_persona(request.query)  # before the lock, as upstream
    except Rejected as exc:
        await reject(peer, ws, str(exc))
        return ws
    counters.waiting += 1
    peer.changed()
    acquired = False
    try:
        async with peer.lock:  # a second client waits here, silently, as upstream
            acquired = True
            counters.waiting -= 1
            counters.active = True
            try:
                await converse(peer, ws, request.query)
            except Rejected as exc:
                await reject(peer, ws, str(exc))
            finally:
                counters.active = False
    finally:
        if not acquired:
            counters.waiting -= 1
        peer.changed()
    return ws


async def reject(peer: Peer, ws: web.WebSocketResponse, problem: str) -> None:
    log.error("session rejected: %s", problem)
    peer.counters.rejected.append(problem)
    peer.changed()
    await ws.close()


async def converse(peer: Peer, ws: web.WebSocketResponse, query: Any) -> None:
    counters = peer.counters
    counters.sessions += 1
    await asyncio.get_running_loop().run_in_executor(peer.model.pool, peer.model.reset)
    asked = {"voice": query["voice_prompt"], "text": query["text_prompt"]}
    used: dict[str, str | None] = {}
    if not await peer.prefill(ws, used):
        return
    counters.prefills.append({"asked": asked, "used": used})  # each conversation that starts
    if used != asked:
        counters.wrong_persona += 1
    await ws.send_bytes(Handshake().encode())
    counters.handshakes += 1
    peer.changed()
    reader = sphn.OpusStreamReader(SAMPLE_RATE)
    writer = sphn.OpusStreamWriter(SAMPLE_RATE)
    pending = np.zeros(0, dtype=np.float32)
    first_audio, answered = True, 0
    async for message in ws:
        if message.type is not WSMsgType.BINARY:
            log.info("unexpected message type %s", message.type)
            continue
        if not message.data:
            log.info("empty message")
            continue
        if message.data[0] != Audio.KIND:
            counters.unknown_kinds += 1
            log.info("unknown message kind %d", message.data[0])
            continue
        payload = message.data[1:]
        if first_audio and not starts_with_opus_head(payload):
            counters.reader_died += 1
            log.error("ogg reader: the stream has no OpusHead page; read_pcm() -> None")
            break
        first_audio = False
        pcm = reader.append_bytes(payload)
        if pcm is None or len(pcm) == 0:
            continue
        pending = np.concatenate([pending, pcm.astype(np.float32)])
        while len(pending) >= FRAME_SAMPLES:
            frame, pending = pending[:FRAME_SAMPLES], pending[FRAME_SAMPLES:]
            counters.frames_in += 1
            if peer.args.hang_after is not None and answered >= peer.args.hang_after:
                log.warning("hanging (as a stuck GPU step would)")
                await asyncio.Event().wait()
            audio, piece = await peer.run(frame)
            if piece:
                counters.texts_out += 1
                await ws.send_bytes(Text(piece).encode())
            if audio is None:
                continue
            answered += 1
            counters.frames_out += 1
            for page in ogg_pages(writer.append_pcm(audio)):
                await ws.send_bytes(Audio(page).encode())
    await ws.close()


async def peer_state(request: web.Request) -> web.Response:
    counters = request.app[PEER].counters
    return web.json_response(counters.__dict__)


async def peer_wait(request: web.Request) -> web.Response:
    """Answer once every ``NAME=N`` of the query holds (counter NAME >= N): a test's event."""
    peer = request.app[PEER]
    for name, value in request.query.items():
        if not isinstance(getattr(peer.counters, name, None), int):
            raise web.HTTPBadRequest(text=f"no counter {name!r}")
        await peer.until(name, int(value))
    return await peer_state(request)


def create_app(args: argparse.Namespace) -> web.Application:
    app = web.Application()
    app[PEER] = Peer(args)
    app.router.add_get("/api/chat", chat)
    app.router.add_get("/peer/state", peer_state)
    app.router.add_get("/peer/wait", peer_wait)
    return app


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="moshi.server (test peer)")
    parser.add_argument("--host", default="localhost", help="printed only, as upstream")
    parser.add_argument("--port", type=int, default=8998)
    parser.add_argument("--static")
    parser.add_argument("--voice-prompt-dir")
    parser.add_argument("--hf-repo", default="nvidia/personaplex-7b-v1")
    parser.add_argument("--moshi-weight")
    parser.add_argument("--mimi-weight")
    parser.add_argument("--tokenizer")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--cpu-offload", action="store_true")
    parser.add_argument("--ssl")
    parser.add_argument("--seed", type=int, default=42424242)
    parser.add_argument("--voice-frames", type=int, default=4)
    parser.add_argument("--hang-after", type=int, default=None)
    return parser.parse_args(argv)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = parse()
    if args.voice_prompt_dir is None:
        raise SystemExit("no --voice-prompt-dir: would download voices.tgz from the hub")
    if args.static != "none":
        raise SystemExit("--static is not 'none': would download dist.tgz from the hub")
    app = create_app(args)
    print(f"Access the Web UI directly at http://{args.host}:{args.port}", flush=True)
    web.run_app(app, host="0.0.0.0", port=args.port)  # upstream ignores --host too


if __name__ == "__main__":
    main()


# -- for tests: how to run this peer as the server ----------------------------------------------

VOICES = ("NATF2.pt", "NATM1.pt")


def make_voice_dir(path: Path) -> Path:
    """A voice directory with a few prompt files (the peer checks names, not contents)."""
    path.mkdir(parents=True, exist_ok=True)
    for name in VOICES:
        (path / name).write_bytes(b"tiny voice prompt")
    return path


def server_args(port: int, voices: Path, *extra: str) -> list[str]:
    """The real server's arguments, as the orchestrator passes them."""
    return [
        "--host", "127.0.0.1", "--port", str(port), "--static", "none",
        "--voice-prompt-dir", str(voices), *extra,
    ]  # fmt: skip
