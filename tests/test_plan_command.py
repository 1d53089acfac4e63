"""``python -m orchestrator plan``, driven through the command module's ``run``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.commands import CommandError, plan
from orchestrator.config import AppConfig, load_config
from orchestrator.gpu.catalog import engine_key
from orchestrator.gpu.measurements import MeasurementStore
from orchestrator.gpu.placement import GIB, MIB
from orchestrator.gpu.telemetry import GpuBackend, SimulatedGpu

CASCADE = ["whisper-small", "mistral-7b", "vibevoice-0.5b"]
SIZING_GPU_SET = ["sizing-llm", "sizing-tts", "sizing-vlm"]


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


def config_for(profile: str, state_dir: Path) -> AppConfig:
    return load_config(profile=profile, environ={"VO__STATE__DIR": str(state_dir)})


def parse(argv: list[str], profile: str | None = None) -> argparse.Namespace:
    """The command's arguments; ``profile`` stands for the common ``--profile`` option."""
    parser = argparse.ArgumentParser()
    plan.add_arguments(parser)
    return parser.parse_args(argv, argparse.Namespace(profile=profile, config=None))


def run_plan(
    capsys: pytest.CaptureFixture[str],
    config: AppConfig,
    argv: list[str],
    backend: GpuBackend | None = None,
) -> str:
    """``plan`` with ``config``'s profile given explicitly (``--profile``)."""
    assert plan.run(parse(argv, config.profile), config, backend) == 0
    return capsys.readouterr().out


def run_json(
    capsys: pytest.CaptureFixture[str],
    config: AppConfig,
    argv: list[str],
    backend: GpuBackend | None = None,
) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(run_plan(capsys, config, [*argv, "--json"], backend))
    return report


def adds(*refs: str) -> list[str]:
    return [arg for ref in refs for arg in ("--add", ref)]


def test_json_has_the_documented_structure(
    capsys: pytest.CaptureFixture[str], state_dir: Path
) -> None:
    report = run_json(capsys, config_for("t4-16gb", state_dir), ["--gpu", "t4-16gb"])
    assert set(report) == {
        "profile",
        "profile_picked",
        "gpu",
        "engines",
        "vram",
        "all_fit",
        "modes",
        "cost",
        "notes",
    }
    assert report["profile"] == "t4-16gb"
    engines = {e["name"]: e for e in report["engines"]}
    on_gpu = sum(engines[name]["vram_bytes"] for name in ("asr", "llm", "tts"))
    assert report["gpu"] == {
        "name": "t4-16gb",
        "source": "table",
        "type": "t4-16gb",
        "total_bytes": 16 * GIB,
        "stranger_bytes": 0,
        "reserve_bytes": GIB,
        "budget_bytes": 15 * GIB,
        "devices": [
            {
                "device": "cuda:0",
                "name": "t4-16gb",
                "type": "t4-16gb",
                "total_bytes": 16 * GIB,
                "stranger_bytes": 0,
                "budget_bytes": 15 * GIB,
                "used_bytes": on_gpu,
                "left_bytes": 16 * GIB - on_gpu,
                "engines": ["asr", "tts", "llm"],
            }
        ],
    }
    assert engines["asr"]["device"] == "cuda:0" and engines["tts"]["device"] == "cuda:0"
    assert engines["asr"]["placement"] == "gpu"
    assert engines["asr"]["estimate_source"] == "catalog"
    assert engines["piper"]["placement"] == "cpu"  # the fallback voice
    assert set(engines["asr"]) >= {"role", "priority", "vram_bytes", "runs_on", "configured"}
    assert engines["llm"]["placement"] == "gpu" and engines["llm"]["estimate_source"] == "catalog"
    assert engines["tts"]["placement"] == "gpu" and engines["tts"]["estimate_source"] == "catalog"
    assert report["vram"]["used_bytes"] == on_gpu
    assert report["all_fit"] is True
    assert len(report["modes"]) == 1
    assert report["cost"]["usd_per_hour"] == 0.67
    assert report["cost"]["per_month_usd"] == {"24/7": 489.1, "8 h/day": 163.03, "4 h/day": 81.52}
    assert report["notes"] == []


def test_the_sizing_seed_t4_set(capsys: pytest.CaptureFixture[str], state_dir: Path) -> None:
    config = config_for("cpu", state_dir)
    argv = ["--gpu", "t4-16gb", *adds("sizing-asr", "sizing-translation", *SIZING_GPU_SET)]
    report = run_json(capsys, config, argv)
    placed = {e["name"]: e["placement"] for e in report["engines"]}
    assert {name for name, where in placed.items() if where == "gpu"} == set(SIZING_GPU_SET)
    assert placed["sizing-asr"] == placed["sizing-translation"] == "cpu"
    assert report["vram"]["used_bytes"] == int(14.5 * GIB)
    assert report["vram"]["left_bytes"] == int(1.5 * GIB)
    assert report["cost"]["usd_per_hour"] == 0.67  # the cpu profile has no price for a T4
    text = run_plan(capsys, config, argv)
    assert "used 14.50 GiB of 16.00 GiB, 1.50 GiB left (1.00 GiB of it the reserve)" in text
    assert "everything fits on the GPU at once" in text


@pytest.mark.parametrize(("gpu", "fits"), [("t4-16gb", True), ("a100-40gb", True)])
def test_what_fits_whole(
    capsys: pytest.CaptureFixture[str], state_dir: Path, gpu: str, fits: bool
) -> None:
    extra = CASCADE if gpu == "t4-16gb" else ["personaplex-7b", *CASCADE]
    report = run_json(capsys, config_for("cpu", state_dir), ["--gpu", gpu, *adds(*extra)])
    assert report["all_fit"] is fits
    on_gpu = {e["name"] for e in report["engines"] if e["placement"] == "gpu"}
    assert on_gpu == set(extra)


def test_a_24gb_card_shows_the_modes(capsys: pytest.CaptureFixture[str], state_dir: Path) -> None:
    config = config_for("cpu", state_dir)
    argv = ["--gpu", "l4-24gb", *adds("personaplex-7b", *CASCADE)]
    report = run_json(capsys, config, argv)
    assert report["all_fit"] is False
    sets = [set(mode["gpu"]) for mode in report["modes"]]
    assert set(CASCADE) in sets
    assert any({"personaplex-7b", "whisper-small"} <= s for s in sets)
    assert all(mode["used_bytes"] <= mode["budget_bytes"] for mode in report["modes"])
    assert report["cost"]["usd_per_hour"] == 0.85
    text = run_plan(capsys, config, argv)
    assert "not everything fits at once" in text
    assert "  1. gpu: " in text and "  2. gpu: " in text
    assert "off: personaplex-7b" in text
    assert "add --profile l4-24gb" in text


def test_no_gpu_plans_cpu_placements(capsys: pytest.CaptureFixture[str], state_dir: Path) -> None:
    config = config_for("cpu", state_dir)
    report = run_json(capsys, config, adds("personaplex-7b"), SimulatedNoGpu())
    assert report["gpu"]["source"] == "none"
    placed = {e["name"]: e["placement"] for e in report["engines"]}
    assert placed["personaplex-7b"] == "off"
    assert placed["asr"] == "cpu"
    assert any("no GPU detected" in note for note in report["notes"])
    text = run_plan(capsys, config, [], SimulatedNoGpu())
    assert "on no GPU (CPU placements only)" in text
    assert "VRAM     used" not in text


class SimulatedNoGpu:
    def read(self) -> list[Any]:
        return []


def test_a_detected_gpu_counts_what_others_hold(
    capsys: pytest.CaptureFixture[str], state_dir: Path
) -> None:
    sim = SimulatedGpu(24 * GIB, name="NVIDIA L4")
    sim.set_process(4242, 3 * GIB)
    config = config_for("l4-24gb", state_dir)
    report = run_json(capsys, config, [], sim)
    assert report["gpu"]["source"] == "detected"
    assert report["gpu"]["type"] == "l4-24gb"
    assert report["gpu"]["stranger_bytes"] == 3 * GIB
    assert report["gpu"]["budget_bytes"] == 20 * GIB
    assert report["cost"]["source"].startswith("profile l4-24gb")
    assert any("3.00 GiB in use on the GPU now" in note for note in report["notes"])


def test_a_measurement_replaces_the_estimate(
    capsys: pytest.CaptureFixture[str], state_dir: Path
) -> None:
    config = config_for("t4-16gb", state_dir)
    MeasurementStore.in_state_dir(state_dir).record_measurement(
        engine_key(config.engines["asr"]), 640 * MIB
    )
    report = run_json(capsys, config, ["--gpu", "t4-16gb"])
    asr = next(e for e in report["engines"] if e["name"] == "asr")
    assert (asr["estimate_source"], asr["vram_bytes"]) == ("measured", 640 * MIB)


def test_the_price_of_a_gpu_the_profile_is_not_for(
    capsys: pytest.CaptureFixture[str], state_dir: Path
) -> None:
    report = run_json(capsys, config_for("t4-16gb", state_dir), ["--gpu", "a100-80gb"])
    assert report["cost"]["usd_per_hour"] == 3.67
    assert report["cost"]["per_month_usd"]["24/7"] == round(3.67 * 730, 2)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("no-such-model", "no catalog entry 'no-such-model'"),
        ("whisper-small:int4", "has no precision 'int4'"),
        ("whisper-small@high", "invalid literal"),
        ("whisper-small@101", "priority must be 0-100"),
    ],
)
def test_bad_additions_are_operator_errors(state_dir: Path, ref: str, expected: str) -> None:
    with pytest.raises(CommandError, match=expected):
        plan.run(parse(["--gpu", "t4-16gb", "--add", ref]), config_for("cpu", state_dir))


def test_the_same_model_added_twice_is_refused(state_dir: Path) -> None:
    argv = ["--gpu", "t4-16gb", *adds("whisper-small", "whisper-small:int8")]
    with pytest.raises(CommandError, match="already planned"):
        plan.run(parse(argv), config_for("cpu", state_dir))


def test_added_priority_and_precision_are_used(
    capsys: pytest.CaptureFixture[str], state_dir: Path
) -> None:
    argv = ["--gpu", "t4-16gb", *adds("whisper-large-v3:int8@33")]
    report = run_json(capsys, config_for("cpu", state_dir), argv)
    added = next(e for e in report["engines"] if not e["configured"])
    assert (added["priority"], added["vram_bytes"]) == (33, (1550 + 1400) * MIB)
    assert added["estimate_detail"] == "whisper-large-v3:int8"


def test_gpu_without_profile_plans_the_profile_made_for_that_gpu(
    capsys: pytest.CaptureFixture[str], state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VO__STATE__DIR", str(state_dir))
    cpu = config_for("cpu", state_dir)  # what a machine without a GPU resolves "auto" to
    assert plan.run(parse(["--gpu", "t4-16gb"]), cpu) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith("plan     profile t4-16gb (made for t4-16gb, picked by --gpu;")
    llm = next(line for line in out.splitlines() if line.startswith("llm "))
    assert llm.split()[3] == "gpu"  # the T4 profile's Mistral, not the CPU profile's LLM
    assert "add --profile" not in out
    # an explicit --profile is kept, and the note says what else exists
    assert plan.run(parse(["--gpu", "t4-16gb"], "cpu"), cpu) == 0
    kept = capsys.readouterr().out
    assert kept.startswith("plan     profile cpu on t4-16gb") and "add --profile t4-16gb" in kept


def test_unknown_gpu_names_are_rejected_by_the_parser() -> None:
    with pytest.raises(SystemExit):
        parse(["--gpu", "v100-16gb"])
