"""The model catalog and the measurement store: seed figures, lookup, precedence, errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from orchestrator.config import ConfigError, EngineConfig, list_profiles, load_config
from orchestrator.gpu.catalog import (
    CATALOG_FILE,
    engine_key,
    engine_view,
    estimate,
    load_catalog,
    planned_sessions,
)
from orchestrator.gpu.measurements import FILE_NAME, MeasurementStore
from orchestrator.gpu.placement import GIB, MIB, Device, RunsOn


def whisper(model: str = "Systran/faster-whisper-small", **kw: object) -> EngineConfig:
    fields = {"role": "asr", "adapter": "faster-whisper", "model": model, "device": "cuda", **kw}
    return EngineConfig.model_validate(fields)


def test_shipped_catalog_holds_the_seed_figures() -> None:
    catalog = load_catalog()

    def size(ref: str) -> float:
        return catalog.entry(ref).vram_bytes / GIB

    assert 5 <= size("mistral-7b") * GIB / 1e9 <= 6  # "~5-6 GB" via Ollama, Q4
    assert catalog.entry("mistral-7b").precision == "q4_k_m"
    assert 2 <= size("vibevoice-0.5b") <= 3
    assert 0.9 <= size("whisper-small") <= 1.1
    assert size("whisper-tiny") < size("whisper-base") < size("whisper-small")
    assert size("whisper-small") < size("whisper-medium") < size("whisper-large-v3")
    personaplex = catalog.entry("personaplex-7b")
    assert 19 <= personaplex.vram_bytes / 1e9 <= 21  # "~20 GB"
    assert personaplex.entry.per_session_mb * MIB == pytest.approx(1.46 * GIB, rel=0.03)
    assert personaplex.entry.vram_bytes("bf16", sessions=2) > personaplex.vram_bytes
    piper = catalog.entry("piper-voice")
    assert (piper.entry.runs_on, piper.vram_bytes) == (RunsOn.CPU, 50 * MIB)
    sizing = {k: size(f"sizing-{k}") for k in ("asr", "tts", "translation", "llm", "vlm")}
    assert sizing == {"asr": 1, "tts": 4.5, "translation": 3, "llm": 6, "vlm": 4}


LOOKUPS = [
    (
        "faster-whisper",
        "Systran/faster-whisper-small",
        "int8_float16",
        "whisper-small:int8_float16",
    ),
    (
        "faster-whisper",
        "/m/Systran--faster-whisper-large-v3",
        "default",
        "whisper-large-v3:float16",
    ),
    ("faster-whisper", "/srv/models/faster-whisper-medium/", "INT8", "whisper-medium:int8"),
    ("faster-whisper", "tiny", "float32", "whisper-tiny:float32"),
    ("ollama", "mistral:7b-instruct-q4_K_M", "default", "mistral-7b:q4_k_m"),
    ("ollama", "mistral", "q8_0", "mistral-7b:q8_0"),
    ("personaplex", "nvidia/personaplex-7b-v1", "default", "personaplex-7b:bf16"),
    ("piper", "en_US-lessac-medium", "default", "piper-voice:default"),
    ("vibevoice-realtime", "microsoft/VibeVoice-Realtime-0.5B", "bf16", "vibevoice-0.5b:bf16"),
    ("vibevoice", "vibevoice-realtime-0.5b", "default", "vibevoice-0.5b-wrapper:bf16"),
]


@pytest.mark.parametrize(("adapter", "model", "compute_type", "label"), LOOKUPS)
def test_lookup_by_adapter_model_and_precision(
    adapter: str, model: str, compute_type: str, label: str
) -> None:
    match = load_catalog().lookup(adapter, model, compute_type)
    assert match is not None
    assert match.label == label


@pytest.mark.parametrize(
    ("adapter", "model", "compute_type"),
    [
        ("faster-whisper", "Systran/faster-whisper-small", "int4"),  # no such precision
        ("faster-whisper", "my-own-finetune", "float16"),  # no such model
        ("transformers", "Systran/faster-whisper-small", "float16"),  # other adapter
    ],
)
def test_lookup_misses(adapter: str, model: str, compute_type: str) -> None:
    assert load_catalog().lookup(adapter, model, compute_type) is None


def test_estimate_prefers_measured_then_config_then_catalog() -> None:
    catalog = load_catalog()
    store = MeasurementStore(None)
    engine = whisper(compute_type="float16")
    found = estimate(engine, catalog, store)
    assert (found.source, found.detail, found.vram_bytes) == (
        "catalog",
        "whisper-small:float16",
        985 * MIB,
    )
    assert found.runs_on is RunsOn.GPU_OR_CPU
    store.record_measurement(engine_key(engine), 812 * MIB)
    assert estimate(engine, catalog, store).vram_bytes == 812 * MIB
    assert estimate(engine, catalog, store).source == "measured"
    own_figure = whisper(compute_type="float16", estimate_vram_mb=3000)
    assert (estimate(own_figure, catalog).source, estimate(own_figure, catalog).vram_bytes) == (
        "config",
        3000 * MIB,
    )  # the operator's figure beats the built-in table
    unknown = whisper("my-own-finetune", estimate_vram_mb=3000)
    assert (estimate(unknown, catalog).source, estimate(unknown, catalog).vram_bytes) == (
        "config",
        3000 * MIB,
    )
    assert estimate(unknown, catalog).runs_on is RunsOn.GPU  # unknown model: no CPU fallback
    nothing = whisper("my-own-finetune")
    assert estimate(nothing, catalog).source == "none"
    with pytest.raises(ValueError, match=r"engines\.asr\.estimate_vram_mb"):
        engine_view("asr", nothing, estimate(nothing, catalog))


def test_engine_view_follows_the_operators_device() -> None:
    catalog = load_catalog()
    on_cpu = whisper(device="cpu", compute_type="int8", priority=70)
    view = engine_view("asr", on_cpu, estimate(on_cpu, catalog), leased=True)
    assert (view.prefers, view.runs_on, view.wants_gpu) == (Device.CPU, RunsOn.CPU, False)
    assert (view.priority, view.leased) == (70, True)
    piper_on_cuda = EngineConfig.model_validate(
        {"role": "tts", "adapter": "piper", "model": "en_US-amy-low", "device": "cuda"}
    )
    found = estimate(piper_on_cuda, catalog)
    assert found.runs_on is RunsOn.CPU  # the catalog narrows: Piper is CPU only


@pytest.mark.parametrize("profile", list_profiles())
def test_every_shipped_profile_can_be_planned(profile: str) -> None:
    config = load_config(profile=profile, environ={})
    catalog = load_catalog()
    for name, engine in config.engines.items():
        view = engine_view(name, engine, estimate(engine, catalog))
        assert view.vram_bytes > 0 or not view.wants_gpu, name


@pytest.mark.parametrize("profile", ["t4-16gb", "l4-24gb", "a100-40gb", "a100-80gb"])
def test_the_gpu_profiles_plan_their_llm_for_the_catalogs_sessions(profile: str) -> None:
    """The sessions the VRAM plan counts are the ones the LLM server is told to serve at once
    (Ollama's OLLAMA_NUM_PARALLEL), so the profiles no longer set that variable themselves."""
    llm = load_config(profile=profile, environ={}).engines["llm"]
    assert planned_sessions(llm, load_catalog()) == 2  # the catalog's Mistral 7B
    assert "OLLAMA_NUM_PARALLEL" not in llm.options.get("env", {})
    assert planned_sessions(whisper("my-own-finetune"), load_catalog()) == 1  # no entry


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "extra.toml"
    path.write_text(text)
    return path


def test_an_extra_catalog_layers_over_the_shipped_one(tmp_path: Path) -> None:
    extra = write(
        tmp_path,
        "[models.whisper-small.precisions.float16]\nweights_mb = 700\n"
        '[models.my-asr]\nrole = "asr"\nadapter = "faster-whisper"\nnames = ["my-asr"]\n'
        'default_precision = "int8"\nprecisions.int8 = { weights_mb = 100 }\n',
    )
    catalog = load_catalog([CATALOG_FILE, extra])
    assert catalog.entry("whisper-small:float16").vram_bytes == (700 + 500) * MIB
    assert catalog.entry("whisper-small:int8").vram_bytes == (250 + 500) * MIB
    match = catalog.lookup("faster-whisper", "/models/my-asr", "default")
    assert match is not None and match.vram_bytes == 100 * MIB


HEAD = "[models.x]\nrole = 'asr'\n"
ONE = "precisions.a = { weights_mb = 1 }\n"
BAD_CATALOGS = [
    (HEAD + ONE + "size = 3\n", r"models\.x\.size: unknown key"),
    (HEAD + "precisions.a = { weights_mb = -1 }\n", r"models\.x\.precisions\.a\.weights_mb"),
    (HEAD + "runs_on = 'tpu'\n" + ONE, r"models\.x\.runs_on.*'tpu'"),
    (HEAD + "default_precision = 'b'\n" + ONE, r"models\.x: default_precision 'b'"),
    (HEAD, r"models\.x\.precisions: Field required"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_CATALOGS)
def test_a_bad_catalog_names_key_and_file(tmp_path: Path, text: str, expected: str) -> None:
    bad = write(tmp_path, text)
    with pytest.raises(ConfigError, match=expected) as caught:
        load_catalog([bad])
    assert str(bad) in str(caught.value)
    assert str(caught.value).startswith("invalid catalog")


def test_measurements_survive_a_restart(tmp_path: Path) -> None:
    clock = iter([100.0, 200.0]).__next__
    store = MeasurementStore.in_state_dir(tmp_path / "state")
    assert store.lookup("a|b|c") is None
    store = MeasurementStore(tmp_path / "state" / FILE_NAME, clock=clock)
    store.record_measurement("a|b|c", 5 * GIB)
    store.record_measurement("a|b|c", 4 * GIB)  # the latest measurement wins
    again = MeasurementStore.in_state_dir(tmp_path / "state")
    assert again.lookup("a|b|c") == 4 * GIB
    item = again.get("a|b|c")
    assert item is not None and item.measured_at == 200.0
    assert [p.name for p in (tmp_path / "state").iterdir()] == [FILE_NAME]  # no scratch left
    again.forget("a|b|c")
    assert MeasurementStore.in_state_dir(tmp_path / "state").items() == {}
    with pytest.raises(ValueError, match="negative"):
        again.record_measurement("x", -1)


def test_a_damaged_measurements_file_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / FILE_NAME
    for damage in ("{not json", json.dumps({"measurements": {"k": {"vram_bytes": "x"}}})):
        path.write_text(damage)
        with caplog.at_level(logging.WARNING):
            assert MeasurementStore(path).items() == {}
        assert "ignoring unreadable VRAM measurements" in caplog.text
        caplog.clear()


def test_an_in_memory_store_keeps_nothing_between_instances(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = MeasurementStore(None)
    store.record_measurement("k", 1)
    assert store.lookup("k") == 1
    assert MeasurementStore(None).lookup("k") is None
    assert list(tmp_path.iterdir()) == []
