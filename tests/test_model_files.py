"""What a model folder lacks is named, the weights included: one file, or every shard its index
lists (the missing-model message used to name the configs and leave the weights out)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from services.base import EngineSpec, ModelArtifact, Role
from services.errors import ModelMissing
from services.model_ref import missing_weights
from services.transformers_llm import TransformersChat
from tests.test_cli import run_cli

GLOBS = ("*.safetensors",)


def test_a_folder_without_weights_names_them(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert missing_weights(tmp_path, GLOBS) == ["*.safetensors (the weights)"]
    (tmp_path / "model.safetensors").write_bytes(b"x")
    assert missing_weights(tmp_path, GLOBS) == []


def test_a_sharded_checkpoint_names_each_missing_shard(tmp_path: Path) -> None:
    shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    index = {"weight_map": {"a.weight": shards[0], "b.weight": shards[1], "c.bias": shards[1]}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / shards[0]).write_bytes(b"x")
    assert missing_weights(tmp_path, GLOBS) == [shards[1]]
    (tmp_path / shards[1]).write_bytes(b"x")
    assert missing_weights(tmp_path, GLOBS) == []


def test_a_hub_artifact_lists_configs_and_weights(tmp_path: Path) -> None:
    artifact = ModelArtifact(
        "Qwen/Qwen2.5-0.5B-Instruct", ("*",), ("config.json",), weight_globs=GLOBS
    )
    assert artifact.missing_files(tmp_path) == ["config.json", "*.safetensors (the weights)"]


async def test_an_llm_folder_without_its_weights_is_missing_them(
    tiny_llm_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "llm"
    shutil.copytree(tiny_llm_dir, folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    engine = TransformersChat(EngineSpec("llm", Role.LLM, str(folder), tmp_path / "models"))
    with pytest.raises(ModelMissing, match=r"\*\.safetensors \(the weights\)"):
        await engine.load()


def test_download_offline_names_the_weights_too(tmp_path: Path) -> None:
    env = {"VO__MODELS__DIR": str(tmp_path / "models"), "VO__STATE__DIR": str(tmp_path)}
    result = run_cli("download", "--profile", "cpu", "--engine", "llm", env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "config.json" in result.stderr and "*.safetensors (the weights)" in result.stderr
