"""Time to first audio over ``/v1/realtime``, and what the orchestrator adds on top of the engines.

    python bench/latency.py [--turns 10] [--config FILE]

Without ``--config`` it builds the tiny test engines offline (noise models: the figures measure
the plumbing, not a real model's speed), with a fixed sampling seed for the LLM
(``sessions.llm_options.seed``). Each turn streams espeak-ng speech in real time in 100 ms
chunks, then silence, and measures:

- ttfa: end of the user's speech -> first audio delta received (includes the end-of-turn
  silence the VAD waits for, ``sessions.end_of_turn_silence_ms``);
- after_stop: the ``speech_stopped`` event -> first audio delta (what the server does once the
  turn has ended: ASR, LLM first sentence, TTS, streaming);
- direct: the same engine calls in-process, no server, after the turn (once the engines have
  rested a second, as they had before the server's turn): the bench watches the engines the
  session calls (a thin wrapper on each engine object, which both arms call through; the
  server's code is untouched) and replays what they were asked: the utterance the ASR got, the
  messages and options the LLM got (the conversation's history, so the prompt is as long; the
  seed makes the reply the same, hence the first sentence the TTS speaks);
- own share: after_stop less the engines' time on the turn's path inside the server (the final
  transcription, the LLM up to the delta that ended the first sentence, the TTS up to its first
  chunk): what the orchestrator itself spends, however busy the machine is.

It prints p50/p99 of each, the overhead ratio after_stop / direct and the orchestrator's added
milliseconds (after_stop p50 less direct p50, and the median of the per-turn differences).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
import numpy as np
from harness import KEY, served, tiny_config

from orchestrator.app.runtime import Runtime
from orchestrator.voice.cascade import reply
from services.base import ChatModel, SpeechRecognizer, SpeechSynthesizer

RATE = 24_000
CHUNK_MS = 100
PROMPTS = ["Good morning, can we start?", "What is seven times eight?", "Please repeat that."]
SEED = 7
REST_S = 1.0  # before a replay: the reply's last engine work (and its spinning threads) settles


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Call:
    """One engine call as the session made it: its arguments, when it started, when each item
    came out, when it ended."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    started: float
    items: list[float] = field(default_factory=list)
    ended: float | None = None


class Watched:
    """An engine's streaming method, replaced on the engine object by one that records each
    call (both arms call through it: the server's turn and its direct replay)."""

    def __init__(self, engine: object, method: str) -> None:
        self.original: Callable[..., AsyncGenerator[Any, None]] = getattr(engine, method)
        self.calls: list[Call] = []
        setattr(engine, method, self._call)

    async def _call(self, *args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
        call = Call(args, kwargs, time.perf_counter())
        self.calls.append(call)
        try:
            async with aclosing(self.original(*args, **kwargs)) as items:
                async for item in items:
                    call.items.append(time.perf_counter())
                    yield item
        finally:  # a cancelled call (a partial transcription) ends once its thread is done
            call.ended = time.perf_counter()


@dataclass(frozen=True)
class Stages:
    """The engines' time on a turn's path, and the calls behind it."""

    asr: float  # the final transcription (earlier ones in the turn are partials)
    llm: float  # the LLM's call up to the delta before the first synthesis began
    tts: float  # the TTS's call up to its first chunk
    transcription: Call
    chat: Call
    overlapped: bool  # a partial transcription was still running when the final one started

    @property
    def total(self) -> float:
        return self.asr + self.llm + self.tts


def stages(asr: Watched, llm: Watched, tts: Watched, since: int) -> Stages:
    """The engines' time on the path of the turn whose LLM call is ``llm.calls[since]``."""
    chat = llm.calls[since]
    speech = next(c for c in tts.calls if c.started >= chat.started)
    final = [c for c in asr.calls if c.started <= chat.started][-1]
    assert final.ended is not None
    sentence_at = max(t for t in chat.items if t <= speech.started)
    earlier = [c for c in asr.calls if c.started < final.started]
    return Stages(
        final.ended - final.started,
        sentence_at - chat.started,
        speech.items[0] - speech.started,
        final,
        chat,
        any(c.ended is None or c.ended > final.started for c in earlier),
    )


@dataclass(frozen=True)
class ServerTurn:
    total: float  # speech end -> first audio delta
    after_stop: float  # speech_stopped -> first audio delta
    stages: Stages


async def turn_over_socket(
    ws: aiohttp.ClientWebSocketResponse, speech: np.ndarray
) -> tuple[float, float]:
    pcm = (speech * 32767).astype(np.int16).tobytes()
    silence = bytes(RATE * 2 * 2)  # 2 s
    step = RATE * CHUNK_MS // 1000 * 2
    speech_end = 0.0
    stopped_at = first_audio = None

    async def send() -> None:
        nonlocal speech_end
        for offset in range(0, len(pcm), step):
            chunk = pcm[offset : offset + step]
            event = {"type": "input_audio_buffer.append", "audio": base64.b64encode(chunk).decode()}
            await ws.send_str(json.dumps(event))
            await asyncio.sleep(CHUNK_MS / 1000)  # real-time pacing, as a microphone sends
        speech_end = time.perf_counter()
        for offset in range(0, len(silence), step):
            event = {
                "type": "input_audio_buffer.append",
                "audio": base64.b64encode(silence[offset : offset + step]).decode(),
            }
            await ws.send_str(json.dumps(event))
            await asyncio.sleep(CHUNK_MS / 1000)

    sender = asyncio.create_task(send())
    while True:
        event = json.loads((await ws.receive()).data)
        if event["type"] == "input_audio_buffer.speech_stopped" and stopped_at is None:
            stopped_at = time.perf_counter()
        elif event["type"] == "response.audio.delta" and first_audio is None:
            first_audio = time.perf_counter()
        elif event["type"] == "response.done":
            break
        elif event["type"] == "error":
            raise RuntimeError(event["error"])
    await sender
    assert stopped_at is not None and first_audio is not None
    return first_audio - speech_end, first_audio - stopped_at


async def direct_turn(runtime: Runtime, turn: ServerTurn, voice: str | None) -> float:
    """The turn's engine calls again, straight: its utterance to the ASR, then its messages to
    the LLM and the first sentence to the TTS (``cascade.reply``, as the session streams it)."""
    s = runtime.config.sessions
    asr, llm, tts = (runtime.fleet.engine(n) for n in (s.asr, s.llm, s.tts))
    assert isinstance(asr, SpeechRecognizer) and isinstance(llm, ChatModel)
    assert isinstance(tts, SpeechSynthesizer)
    started = time.perf_counter()
    transcription, chat = turn.stages.transcription, turn.stages.chat
    async with aclosing(asr.transcribe(*transcription.args, **transcription.kwargs)) as segments:
        "".join([seg.text async for seg in segments])
    messages, options = chat.args[0], chat.kwargs.get("options")
    async with aclosing(reply(llm, tts, messages, voice=voice, llm_options=options)) as pieces:
        async for piece in pieces:
            if piece.audio is not None:
                return time.perf_counter() - started
    raise RuntimeError("no audio")


def row(name: str, values: list[float]) -> str:
    p50, p99 = percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000
    return f"{name:<40}{p50:>9.1f}{p99:>9.1f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--config", type=Path)
    args = parser.parse_args()
    from tests.speech import speak

    scratch = Path(tempfile.mkdtemp(prefix="vo-latency-"))
    seeded = f"\n[sessions]\nllm_options = {{ seed = {SEED} }}\n"
    async with served(args.config or tiny_config(scratch, seeded)) as server:
        runtime, port = server.runtime, server.port
        s = runtime.config.sessions
        await asyncio.gather(*(runtime.fleet.load(n) for n in (s.vad, s.asr, s.llm, s.tts)))
        asr = Watched(runtime.fleet.engine(s.asr), "transcribe")
        llm = Watched(runtime.fleet.engine(s.llm), "chat")
        tts = Watched(runtime.fleet.engine(s.tts), "synthesize")
        speeches = [speak(PROMPTS[i % len(PROMPTS)], RATE) for i in range(args.turns)]
        turns: list[ServerTurn] = []
        direct: list[float] = []
        replayed: list[Stages] = []
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(
                f"http://127.0.0.1:{port}/v1/realtime", headers={"Authorization": f"Bearer {KEY}"}
            )
            await ws.receive()  # session.created
            for speech in speeches:
                since = len(llm.calls)
                total, after = await turn_over_socket(ws, speech)
                turn = ServerTurn(total, after, stages(asr, llm, tts, since))
                turns.append(turn)
                voice = tts.calls[-1].kwargs.get("voice")
                since = len(llm.calls)
                await asyncio.sleep(REST_S)  # from rest, as the server's turn started
                direct.append(await direct_turn(runtime, turn, voice))
                replayed.append(stages(asr, llm, tts, since))
            await ws.close()
    config = runtime.config
    silence_ms = config.sessions.end_of_turn_silence_ms
    print(
        f"{args.turns} turns, end-of-turn silence {silence_ms} ms, engines: "
        f"{', '.join(f'{n}={e.model}' for n, e in config.engines.items())}"
    )
    after_stop = [t.after_stop for t in turns]
    own = [t.after_stop - t.stages.total for t in turns]
    print(f"{'stage':<40}{'p50 ms':>9}{'p99 ms':>9}")
    print(row("ttfa (speech end -> first audio)", [t.total for t in turns]))
    print(row("after_stop (server, turn ended)", after_stop))
    print(row("direct (same engine calls, in-process)", direct))
    print(row("own share (after_stop - its engines)", own))
    for name in ("asr", "llm", "tts"):
        print(row(f"  {name} in the server", [getattr(t.stages, name) for t in turns]))
        print(row(f"  {name} direct", [getattr(r, name) for r in replayed]))
    overlapped = sum(t.stages.overlapped for t in turns)
    print(f"turns whose transcription began while a partial one still ran: {overlapped}")
    ratio = statistics.median(after_stop) / statistics.median(direct)
    added = (statistics.median(after_stop) - statistics.median(direct)) * 1000
    paired = statistics.median(a - d for a, d in zip(after_stop, direct, strict=True)) * 1000
    print(
        f"overhead ratio after_stop / direct (medians): {ratio:.2f}; the orchestrator adds "
        f"{added:.1f} ms (p50 - p50), {paired:.1f} ms (median of per-turn differences); "
        f"its own share p50 {statistics.median(own) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
