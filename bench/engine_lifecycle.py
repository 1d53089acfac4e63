"""Measure each engine's load, unload, park and resume, with the memory each step keeps or frees.

    python bench/engine_lifecycle.py                    # tiny test models built offline
    python bench/engine_lifecycle.py --whisper DIR --piper VOICE.onnx --llm DIR --rounds 5
    python bench/engine_lifecycle.py --vllm http://127.0.0.1:8000/v1 --vllm-model NAME

Each round loads from disk and unloads, then loads, parks, resumes and unloads again, so load
and resume are timed on the same run. One row per engine: medians of load, unload, park and
resume seconds, how many times faster a resume is than a load, and RSS added by a load, given
back by an unload, kept while parked and given back by a resume (MB); on a GPU (found by NVML)
the same script adds the device memory a load takes, an unload and a park free, and a resume
takes again. The first round's load is left out of the medians (it pays for library start-up)
and shown apart. An engine that cannot park says why. The device is the GPU when torch or
CTranslate2 sees one (``--device`` to choose); on a CPU parking moves nothing, so it keeps the
load's RSS and a resume only flips the engine back to serving.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.base import Engine, EngineSpec, LoadReport, Parkable, Role
from services.errors import CannotPark
from services.piper_tts import PiperEngine
from services.transformers_llm import TransformersChat
from services.whisper_asr import WhisperEngine

MB = 1e6


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


async def measure(engine: Engine, rounds: int) -> dict[str, Any]:
    steps: dict[str, list[float | None]] = {}

    def note(key: str, value: float | None) -> None:
        steps.setdefault(key, []).append(value)

    cannot: str | None = None
    for _ in range(rounds):
        load = await engine.load()
        unload = await engine.unload()
        note("load_s", load.seconds)
        note("load_mb", load.ram_delta_bytes / MB)
        note("load_vram_mb", _mb(load.vram_delta_bytes))
        note("unload_s", unload.seconds)
        note("unload_mb", unload.ram_freed_bytes / MB)
        note("unload_vram_mb", _mb(unload.vram_freed_bytes))
        if cannot is not None or not isinstance(engine, Parkable):
            cannot = cannot or "the adapter has no parked state"
            continue
        await engine.load()
        try:
            park = await engine.park()
        except CannotPark as exc:
            cannot = exc.message
            await engine.unload()
            continue
        resume: LoadReport = await engine.load()
        assert resume.resumed, "load after park must resume"
        note("park_s", park.seconds)
        note("park_kept_mb", park.ram_kept_bytes / MB)
        note("park_vram_mb", _mb(park.vram_freed_bytes))
        note("resume_s", resume.seconds)
        note("resume_mb", -resume.ram_delta_bytes / MB)  # the host copy given back
        note("resume_vram_mb", _mb(resume.vram_delta_bytes))
        await engine.unload()
    first = {"first_load_s": steps["load_s"][0], "first_load_mb": steps["load_mb"][0]}
    later = {k: v[1:] if k.startswith("load") and len(v) > 1 else v for k, v in steps.items()}
    result: dict[str, Any] = {"engine": engine.name, **first, "cannot_park": cannot}
    result.update({key: _median(values) for key, values in later.items()})
    load_s, resume_s = result.get("load_s"), result.get("resume_s")
    result["resume_speedup"] = load_s / resume_s if load_s and resume_s else None
    return result


def _mb(value: int | None) -> float | None:
    return None if value is None else value / MB


def pick_device(wanted: str) -> str:
    if wanted != "auto":
        return wanted
    try:
        import ctranslate2

        if ctranslate2.get_cuda_device_count() > 0:
            return "cuda"
    except ImportError:
        pass
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def engines(args: argparse.Namespace, scratch: Path) -> list[Engine]:
    device = args.device
    whisper = EngineSpec(
        "asr", Role.ASR, str(args.whisper), scratch, device, compute_type=args.compute_type
    )
    made: list[Engine] = [
        WhisperEngine(whisper),
        TransformersChat(EngineSpec("llm", Role.LLM, str(args.llm), scratch, device)),
        PiperEngine(EngineSpec("tts", Role.TTS, str(args.piper), scratch, device)),
    ]
    if args.vllm:
        from services.vllm_llm import VllmChat

        spec = EngineSpec("vllm", Role.LLM, args.vllm_model, scratch, options={"url": args.vllm})
        made.append(VllmChat(spec))
    return made


COLUMNS: list[tuple[str, str, str]] = [
    ("load s", "load_s", "{:.3f}"),
    ("unload s", "unload_s", "{:.3f}"),
    ("park s", "park_s", "{:.4f}"),
    ("resume s", "resume_s", "{:.4f}"),
    ("resume x", "resume_speedup", "{:.0f}x"),
    ("load +MB", "load_mb", "{:.1f}"),
    ("unload -MB", "unload_mb", "{:.1f}"),
    ("parked MB", "park_kept_mb", "{:.1f}"),
    ("resume -MB", "resume_mb", "{:.1f}"),
]
GPU_COLUMNS: list[tuple[str, str, str]] = [
    ("VRAM load+", "load_vram_mb", "{:.0f}"),
    ("unload-", "unload_vram_mb", "{:.0f}"),
    ("park-", "park_vram_mb", "{:.0f}"),
    ("resume+", "resume_vram_mb", "{:.0f}"),
]


def table(rows: list[dict[str, Any]], rounds: int, device: str) -> str:
    on_gpu = any(row.get("load_vram_mb") is not None for row in rows)
    columns = COLUMNS + (GPU_COLUMNS if on_gpu else [])

    def cell(row: dict[str, Any], key: str, form: str) -> str:
        return "-" if row.get(key) is None else form.format(row[key])

    head = f"{'engine':<8}{'first load s':>13}" + "".join(f"{t:>11}" for t, _, _ in columns)
    lines = [head + f"   (medians of {rounds} rounds, {device}; memory in MB)"]
    for row in rows:
        line = f"{row['engine']:<8}{row['first_load_s']:>13.3f}"
        line += "".join(f"{cell(row, key, form):>11}" for _, key, form in columns)
        lines.append(line)
    for row in rows:
        if row["cannot_park"]:
            lines.append(f"  {row['engine']} cannot park ({row['cannot_park']}): it is unloaded")
    if not on_gpu:
        lines.append(
            "  no GPU: parking moves nothing, so it keeps the load's RSS (no VRAM columns)"
        )
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--whisper", type=Path, help="CTranslate2 Whisper folder")
    parser.add_argument("--piper", type=Path, help="Piper .onnx voice")
    parser.add_argument("--llm", type=Path, help="transformers causal LM folder")
    parser.add_argument("--vllm", help="a vLLM server's /v1 URL (started with sleep mode)")
    parser.add_argument("--vllm-model", default="default", help="the model it serves")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--compute-type", default="default", help="Whisper's (default: as saved)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    args.device = pick_device(args.device)
    scratch = Path(tempfile.mkdtemp(prefix="vo-bench-"))
    if args.whisper is None or args.piper is None or args.llm is None:
        from tests.fixtures.tiny_llm import build_tiny_llm
        from tests.fixtures.tiny_piper import build_tiny_piper_voice
        from tests.fixtures.tiny_whisper import build_tiny_whisper

        # float32 and a wide feed-forward: ~36 MB of weights, enough for RSS to show them
        heavy = {"ffn_dim": 16384, "quantization": "float32"}
        args.whisper = args.whisper or build_tiny_whisper(scratch / "whisper", **heavy)
        args.piper = args.piper or build_tiny_piper_voice(scratch / "piper")
        args.llm = args.llm or build_tiny_llm(scratch / "llm")
    rows = [await measure(engine, args.rounds) for engine in engines(args, scratch)]
    print(json.dumps(rows, indent=2) if args.json else table(rows, args.rounds, args.device))


if __name__ == "__main__":
    asyncio.run(main())
