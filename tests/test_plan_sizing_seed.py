"""The GPU sizing seed's setups through ``python -m orchestrator plan``: Setup 1 from the
``t4-16gb-sizing`` profile, and the multi-GPU sets (``2x-t4-16gb``, ``t4-16gb+gtx1660-6gb``)
placed per device. Also the planned-only roles (VLM, translation) that profile configures."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from orchestrator.commands import plan
from orchestrator.config import AppConfig, ConfigError, EngineConfig, load_config
from orchestrator.gpu.placement import GIB
from orchestrator.gpu.telemetry import SimulatedGpu, SimulatedGpus
from services.base import EngineSpec, Role
from services.managed import ServerEngine
from services.registry import create_engine
from tests.test_plan_command import parse, run_json, run_plan

PROFILE = "t4-16gb-sizing"


def gb(value: float) -> int:
    return int(value * GIB)


def sizing(tmp_path: Path, overlay: str = "") -> AppConfig:
    """The sizing profile with this test's state folder and an optional TOML overlay."""
    extra = tmp_path / "overlay.toml"
    extra.write_text(overlay)
    environ = {"VO__STATE__DIR": str(tmp_path / "state")}
    return load_config(profile=PROFILE, config_file=extra, environ=environ)


def placed(report: dict[str, Any]) -> dict[str, str]:
    """Engine -> its device (cuda:N or cpu), None when off."""
    return {e["name"]: e["device"] for e in report["engines"]}


def test_setup_1_the_seeds_figures_on_one_t4(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = sizing(tmp_path)
    report = run_json(capsys, config, ["--gpu", "t4-16gb"])
    engines = {e["name"]: e for e in report["engines"]}
    assert {n for n, e in engines.items() if e["placement"] == "gpu"} == {"llm", "tts", "vlm"}
    assert {n for n, e in engines.items() if e["placement"] == "cpu"} == {
        "asr",
        "translation",
        "vad",
    }
    sizes = {n: engines[n]["vram_bytes"] for n in ("llm", "tts", "vlm", "asr", "translation")}
    assert sizes == {"llm": gb(6), "tts": gb(4.5), "vlm": gb(4), "asr": gb(1), "translation": gb(3)}
    assert {engines[n]["estimate_source"] for n in sizes} == {"catalog"}
    assert engines["vlm"]["estimate_detail"] == "sizing-vlm:default"
    assert (engines["vlm"]["role"], engines["translation"]["role"]) == ("vlm", "translation")
    assert report["vram"]["used_bytes"] == gb(14.5)
    assert report["vram"]["left_bytes"] == gb(1.5)
    assert report["all_fit"] is True and report["notes"] == []
    text = run_plan(capsys, config, ["--gpu", "t4-16gb"])
    assert "used 14.50 GiB of 16.00 GiB, 1.50 GiB left (1.00 GiB of it the reserve)" in text
    assert "everything fits on the GPU at once" in text
    vlm = next(line for line in text.splitlines() if line.startswith("vlm "))
    assert vlm.split()[3:6] == ["gpu", "4.00", "GiB"]


def test_setup_4_two_t4s_the_vlm_alone_on_the_second(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = sizing(tmp_path)
    report = run_json(capsys, config, ["--gpu", "2x-t4-16gb"])
    assert report["gpu"]["name"] == report["gpu"]["type"] == "2x-t4-16gb"
    devices = report["gpu"]["devices"]
    assert [(d["device"], d["type"], d["engines"], d["used_bytes"]) for d in devices] == [
        ("cuda:0", "t4-16gb", ["llm", "tts"], gb(10.5)),
        ("cuda:1", "t4-16gb", ["vlm"], gb(4)),
    ]
    assert placed(report) | {"vad": "cpu"} == {
        "llm": "cuda:0",
        "tts": "cuda:0",
        "vlm": "cuda:1",
        "asr": "cpu",
        "translation": "cpu",
        "vad": "cpu",
    }
    assert report["gpu"]["total_bytes"] == gb(32)
    assert report["vram"]["left_bytes"] == gb(17.5)  # the seed says 21.5: 32 - 10.5
    assert report["cost"]["usd_per_hour"] == 1.34
    assert "upper bound" in report["cost"]["source"]
    text = run_plan(capsys, config, ["--gpu", "2x-t4-16gb"])
    assert "on 2x-t4-16gb (table, 2 GPUs, 32.00 GiB in all), reserve 1.00 GiB per GPU" in text
    assert "cuda:0 t4-16gb: used 10.50 GiB of 16.00 GiB, 5.50 GiB left" in text
    assert "cuda:1 t4-16gb: used 4.00 GiB of 16.00 GiB, 12.00 GiB left" in text
    assert "everything fits on the GPUs at once" in text
    vlm = next(line for line in text.splitlines() if line.startswith("vlm "))
    assert vlm.split()[3] == "cuda:1"


def test_setup_2_a_t4_and_a_gtx_1660(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    report = run_json(capsys, sizing(tmp_path), ["--gpu", "t4-16gb+gtx1660-6gb"])
    assert [d["type"] for d in report["gpu"]["devices"]] == ["t4-16gb", "gtx1660-6gb"]
    assert placed(report)["vlm"] == "cuda:1"  # the planner spreads; the seed keeps it spare
    pins = "".join(f'[engines.{n}]\ndevice = "cuda:0"\n' for n in ("llm", "tts", "vlm"))
    pinned = run_json(capsys, sizing(tmp_path, pins), ["--gpu", "t4-16gb+gtx1660-6gb"])
    assert [d["engines"] for d in pinned["gpu"]["devices"]] == [["llm", "tts", "vlm"], []]
    assert pinned["vram"]["used_bytes"] == gb(14.5)


@pytest.mark.parametrize(("gpu", "left"), [("a100-40gb", 25.5), ("a100-80gb", 65.5)])
def test_setup_3_an_a100(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, gpu: str, left: float
) -> None:
    report = run_json(capsys, sizing(tmp_path), ["--gpu", gpu])
    assert report["vram"]["used_bytes"] == gb(14.5)
    assert report["vram"]["left_bytes"] == gb(left)


def test_a_pin_to_a_gpu_the_plan_lacks_stays_off_and_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = sizing(tmp_path, '[engines.vlm]\ndevice = "cuda:1"\n')
    report = run_json(capsys, config, ["--gpu", "t4-16gb"])
    assert placed(report)["vlm"] is None
    assert report["all_fit"] is False
    assert any(
        "engine vlm is pinned to cuda:1 (engines.vlm.device); this plan has cuda:0: it stays off"
        in note
        for note in report["notes"]
    )


def test_two_detected_gpus_are_planned_per_device(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    host = SimulatedGpus([SimulatedGpu(16 * GIB, name="Tesla T4") for _ in range(2)])
    host.gpus[1].set_process(4242, 2 * GIB)
    report = run_json(capsys, sizing(tmp_path), [], host)
    gpu = report["gpu"]
    assert (gpu["name"], gpu["source"], gpu["type"]) == ("2x Tesla T4", "detected", "2x-t4-16gb")
    assert [d["stranger_bytes"] for d in gpu["devices"]] == [0, 2 * GIB]
    assert "2.00 GiB in use on cuda:1 now is left out" in report["notes"]
    assert report["cost"]["source"].startswith("sum of one-GPU defaults")


def test_gpu_sets_are_checked_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse(["--gpu", "t4-16gb+t4-16gb"]).gpu == "2x-t4-16gb"
    with pytest.raises(SystemExit):
        parse(["--gpu", "t4-16gb+v100-16gb"])
    error = capsys.readouterr().err
    assert "unknown GPU type 'v100-16gb'" in error
    assert "known types: a100-40gb, a100-80gb, a10g-24gb, gtx1660-6gb" in error


def test_gpu_without_profile_keeps_the_profile_for_a_set(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """No profile is named after a set: ``--gpu 2x-t4-16gb`` plans the profile in use."""
    config = sizing(tmp_path)
    args = parse(["--gpu", "2x-t4-16gb"])
    assert plan.run(args, config) == 0
    assert capsys.readouterr().out.startswith(f"plan     profile {PROFILE} on 2x-t4-16gb")


def test_an_engine_naming_no_catalog_entry_is_left_out_with_the_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = sizing(tmp_path, '[engines.vlm]\ncatalog = "no-such-entry"\n')
    report = run_json(capsys, config, ["--gpu", "t4-16gb"])
    assert "vlm" not in placed(report)
    assert any(
        note.startswith("engines.vlm.catalog = 'no-such-entry': no catalog entry")
        for note in report["notes"]
    )


# -- the sizing plan's roles ---------------------------------------------------------------------


def engine_config(**fields: str) -> EngineConfig:
    return EngineConfig.model_validate({"model": "m", **fields})


def test_the_new_roles_validate_and_others_do_not() -> None:
    assert engine_config(role="vlm", adapter="ollama").role is Role.VLM
    assert engine_config(role="translation", adapter="ctranslate2").role is Role.TRANSLATION
    with pytest.raises(
        ValueError, match="adapter 'ollama' serves role llm and vlm, not translation"
    ):
        engine_config(role="translation", adapter="ollama")
    with pytest.raises(ValueError, match="adapter 'ctranslate2' serves role translation, not asr"):
        engine_config(role="asr", adapter="ctranslate2")


@pytest.mark.parametrize(
    ("device", "pin"), [("cpu", None), ("cuda", None), ("cuda:0", 0), ("cuda:12", 12)]
)
def test_devices_and_their_pins(device: str, pin: int | None) -> None:
    assert engine_config(role="llm", adapter="ollama", device=device).gpu_pin == pin


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:x", "cuda:-1", "CUDA", "cuda:0,1"])
def test_bad_devices_say_what_is_allowed(tmp_path: Path, device: str) -> None:
    with pytest.raises(ConfigError, match=r"engines\.llm\.device.*cpu, cuda .* or cuda:N"):
        sizing(tmp_path, f'[engines.llm]\ndevice = "{device}"\n')


def test_the_spec_reads_its_device() -> None:
    spec = EngineSpec("x", Role.LLM, "m", Path(), device="cuda:1")
    assert (spec.device_kind, spec.device_index) == ("cuda", 1)
    bare = EngineSpec("x", Role.LLM, "m", Path(), device="cuda")
    assert (bare.device_kind, bare.device_index) == ("cuda", None)
    assert EngineSpec("x", Role.LLM, "m", Path()).device_index is None


def server_env(spec: EngineSpec) -> Mapping[str, str]:
    engine = create_engine("ollama", spec)
    assert isinstance(engine, ServerEngine)
    return engine.process_spec().env


def test_a_server_placed_on_gpu_1_sees_only_that_gpu(tmp_path: Path) -> None:
    env = server_env(EngineSpec("llm", Role.LLM, "mistral", tmp_path, device="cuda:1"))
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    plain = server_env(EngineSpec("llm", Role.LLM, "mistral", tmp_path, device="cuda"))
    assert "CUDA_VISIBLE_DEVICES" not in plain


# -- the README's setups are what `plan` prints -----------------------------------------------

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_plans() -> list[tuple[list[str], str]]:
    """Every ``$ python -m orchestrator plan ...`` in the README (no ``--config``) and what
    follows it up to the next command or the end of its block."""
    found = []
    for block in re.findall(
        r"```\n(\$ python -m orchestrator plan .*?)```", README.read_text(), re.S
    ):
        for chunk in re.split(r"^(?=\$ )", block, flags=re.M):
            command, _, printed = chunk.partition("\n")
            argv = shlex.split(command)[5:]  # after "$ python -m orchestrator plan"
            if chunk.strip() and "--config" not in argv:
                found.append((argv, printed.strip()))
    return found


def test_the_readme_shows_what_plan_prints(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    plans = readme_plans()
    assert len(plans) >= 5, "the seed's setups 1-4 (3 twice) are in the README"
    for argv, printed in plans:
        profile = argv[argv.index("--profile") + 1]
        rest = [a for a in argv if a not in ("--profile", profile)]
        config = load_config(profile=profile, environ={"VO__STATE__DIR": str(tmp_path)})
        assert plan.run(parse(rest, profile), config) == 0
        assert capsys.readouterr().out.strip() == printed, " ".join(argv)
