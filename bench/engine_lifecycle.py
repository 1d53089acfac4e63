"""Measure load and unload time and memory of the in-process engines, with medians.

    python bench/engine_lifecycle.py                    # tiny test models built offline
    python bench/engine_lifecycle.py --whisper DIR --piper VOICE.onnx --rounds 5

Prints one row per engine: median load seconds, median unload seconds, median RSS added by a
load and given back by an unload (MB), and the first-round figures separately, since the first
load also pays for library initialisation.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.base import Engine, EngineSpec, Role
from services.piper_tts import PiperEngine
from services.whisper_asr import WhisperEngine


async def measure(engine: Engine, rounds: int) -> dict[str, float]:
    loads, unloads, added, freed = [], [], [], []
    for _ in range(rounds):
        load = await engine.load()
        unload = await engine.unload()
        loads.append(load.seconds)
        unloads.append(unload.seconds)
        added.append(load.ram_delta_bytes / 1e6)
        freed.append(unload.ram_freed_bytes / 1e6)
    return {
        "first_load_s": loads[0],
        "first_load_mb": added[0],
        "load_s": statistics.median(loads[1:] or loads),
        "unload_s": statistics.median(unloads),
        "load_mb": statistics.median(added[1:] or added),
        "unload_mb": statistics.median(freed),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--whisper", type=Path, help="CTranslate2 Whisper folder")
    parser.add_argument("--piper", type=Path, help="Piper .onnx voice")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="vo-bench-"))
    if args.whisper is None or args.piper is None:
        from tests.fixtures.tiny_piper import build_tiny_piper_voice
        from tests.fixtures.tiny_whisper import build_tiny_whisper

        args.whisper = args.whisper or build_tiny_whisper(scratch / "whisper")
        args.piper = args.piper or build_tiny_piper_voice(scratch / "piper")
    engines: list[Engine] = [
        WhisperEngine(EngineSpec("asr", Role.ASR, str(args.whisper), scratch, compute_type="int8")),
        PiperEngine(EngineSpec("tts", Role.TTS, str(args.piper), scratch)),
    ]
    print(
        f"{'engine':<8}{'first load s':>13}{'first +MB':>10}{'load s':>9}{'unload s':>9}"
        f"{'load +MB':>10}{'unload -MB':>11}   (medians of {args.rounds} rounds)"
    )
    for engine in engines:
        r = await measure(engine, args.rounds)
        print(
            f"{engine.name:<8}{r['first_load_s']:>13.3f}{r['first_load_mb']:>10.1f}"
            f"{r['load_s']:>9.3f}{r['unload_s']:>9.3f}{r['load_mb']:>10.1f}{r['unload_mb']:>11.1f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
