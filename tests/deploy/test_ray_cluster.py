"""``deploy/ray/``: the GCP Ray cluster (a CPU head always on, T4 and L4 GPU workers from zero)
and the Serve config that runs our application on it."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml
from ray.serve.schema import ServeDeploySchema

from orchestrator.config import ScaleConfig

RAY = Path(__file__).resolve().parents[2] / "deploy" / "ray"


def load(name: str) -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load((RAY / name).read_text())
    return found


def test_the_head_is_cpu_only_and_gpu_workers_start_from_zero() -> None:
    cluster = load("cluster.yaml")
    assert cluster["provider"]["type"] == "gcp"
    assert cluster["idle_timeout_minutes"] > 0
    types = cluster["available_node_types"]
    head = types[cluster["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    assert "guestAccelerators" not in head["node_config"]
    start = " ".join(cluster["head_start_ray_commands"])
    assert "--num-gpus=0" in start  # no replica ever lands on the always-on head
    gpus = {
        node["node_config"]["guestAccelerators"][0]["acceleratorType"]: node
        for name, node in types.items()
        if name != cluster["head_node_type"]
    }
    assert set(gpus) == {"nvidia-tesla-t4", "nvidia-l4"}
    for node in gpus.values():
        assert node["min_workers"] == 0
        assert node["max_workers"] >= 1
        assert node["resources"]["GPU"] == 1  # one replica per GPU
        assert node["node_config"]["scheduling"][0]["onHostMaintenance"] == "TERMINATE"
    assert any("[ray]" in command for command in cluster["setup_commands"])


def test_the_serve_config_is_valid_for_ray_and_names_our_builder() -> None:
    config = load("serve.yaml")
    schema = ServeDeploySchema.model_validate(config)
    (app,) = schema.applications
    assert app.name == ScaleConfig().app_name
    module, _, name = app.import_path.partition(":")
    assert callable(getattr(importlib.import_module(module), name))
    assert config["http_options"]["port"] == ScaleConfig().http_port
    assert config["proxy_location"] == "HeadOnly"  # the gateway fronts the head
    assert "VO_API_KEY_FILE" in app.runtime_env["env_vars"]  # one key for every replica
