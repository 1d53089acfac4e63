"""A stand-in for NVIDIA PersonaPlex's server, ``python -m moshi.server`` (NVIDIA/personaplex).

It takes the real server's command line and speaks its protocol as described in
``shared/reference/personaplex.md`` (checked against the real handler):

- it listens on every interface whatever ``--host`` says, and refuses to start without
  ``--voice-prompt-dir`` or with ``--static`` other than ``none`` (the real one would fetch
  ``voices.tgz``/``dist.tgz`` from the hub); it prints "Access the Web UI directly at" when ready;
- a plain ``GET /api/chat`` answers 400 (no upgrade) without touching the model lock;
- ``/api/chat?text_prompt=..&voice_prompt=..`` upgrades at once, then waits silently on one
  global lock (one conversation at a time); ``seed`` in the query, a missing or unknown voice, or
  an empty text prompt close the socket with no handshake and no error frame;
- prefill: voice-prompt frames, 6 silence frames, one step per text-prompt token, 6 silence
  frames, each step polling the socket for 10 ms and throwing away what the client sent; then
  the single byte 0x00;
- only 0x01 Ogg Opus is read (other kinds are logged as unknown); a stream whose first page is
  not the OpusHead BOS page ends the session (the real Ogg reader dies);
- one 80 ms output frame per 80 ms input frame, Ogg Opus pages as separate 0x01 messages, and
  0x02 text pieces (SentencePiece, "▁" as a space; ids 0 and 3 never sent).

The model is a tiny random Moshi LM + Mimi codec built by the PyPI ``moshi`` package (no weights),
and a tiny SentencePiece model trained at start. Test knobs: ``--hang-after N`` stops answering
(the socket stays open) after N output frames of a session, like a stuck GPU step.
``GET /peer/state`` reports counters for the tests.

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


class Peer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.voices = Path(args.voice_prompt_dir)
        self.model = TinyMoshi(args.seed)
        self.lock = asyncio.Lock()
        self.counters = Counters()

    async def run(self, pcm: np.ndarray | None) -> tuple[np.ndarray | None, str | None]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.model.pool, self.model.step, pcm)

    def check_query(self, query: Any) -> str:
        """Reproduce the real handler's failures: the reason, or "" when the persona is fine."""
        if "seed" in query:
            return "KeyError: 'seed'"  # the real code reads request["seed"]
        if "voice_prompt" not in query:
            return "KeyError: 'voice_prompt'"
        voice = self.voices / query["voice_prompt"]
        if not voice.is_file():
            return f"FileNotFoundError: {voice}"
        if not query.get("text_prompt", ""):
            return "TypeError: empty text prompt"
        return ""

    async def prefill(self, ws: web.WebSocketResponse, text: str) -> None:
        steps = self.args.voice_frames + SILENCE_STEPS
        steps += len(self.model.prompt_tokens(text)) + SILENCE_STEPS
        for _ in range(steps):
            await self.run(None)
            try:
                early = await ws.receive(timeout=0.01)  # the real prefill's poll: thrown away
            except TimeoutError:
                continue
            if early.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
                return
            self.counters.early_messages += 1
            if early.type is WSMsgType.BINARY and early.data[:1] == b"\x01":
                self.counters.early_audio += 1


PEER = web.AppKey("peer", Peer)


async def chat(request: web.Request) -> web.StreamResponse:
    peer = request.app[PEER]
    ws = web.WebSocketResponse(max_msg_size=1 << 22)
    await ws.prepare(request)  # a plain GET (no upgrade) is answered 400 right here
    counters = peer.counters
    counters.waiting += 1
    acquired = False
    try:
        async with peer.lock:  # a second client waits here, silently, as upstream
            acquired = True
            counters.waiting -= 1
            counters.active = True
            try:
                await converse(peer, ws, request.query)
            finally:
                counters.active = False
    finally:
        if not acquired:
            counters.waiting -= 1
    return ws


async def converse(peer: Peer, ws: web.WebSocketResponse, query: Any) -> None:
    counters = peer.counters
    counters.sessions += 1
    problem = peer.check_query(query)
    if problem:
        log.error("session rejected: %s", problem)
        counters.rejected.append(problem)
        await ws.close()
        return
    await asyncio.get_running_loop().run_in_executor(peer.model.pool, peer.model.reset)
    await peer.prefill(ws, query["text_prompt"])
    if ws.closed:
        return
    await ws.send_bytes(Handshake().encode())
    counters.handshakes += 1
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


def create_app(args: argparse.Namespace) -> web.Application:
    app = web.Application()
    app[PEER] = Peer(args)
    app.router.add_get("/api/chat", chat)
    app.router.add_get("/peer/state", peer_state)
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
