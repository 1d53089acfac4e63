"""A host of two GPUs in the console: a memory bar per device on the overview, and the plan
page's column for this host placing each engine on its device."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.config import AppConfig, load_config
from services.base import Engine, Role
from tests.console.conftest import Client, console_toml
from tests.fakes import FakeEngine

# Two GPU engines: the LLM (6000 MiB, priority 70) and a planned VLM (4000 MiB, priority 80).
GPU_ENGINES = """
[engines.llm]
role = "llm"
adapter = "ollama"
model = "mistral"
device = "cuda"
priority = 70
estimate_vram_mb = 6000

[engines.vlm]
role = "vlm"
adapter = "ollama"
model = "qwen2.5vl:3b"
device = "cuda"
priority = 80
estimate_vram_mb = 4000
"""


@pytest.fixture
def console_config(tmp_path: Path) -> AppConfig:
    text = console_toml(tmp_path, GPU_ENGINES).replace(
        "simulated_total_mb = 24576", 'simulated_gpus = "2x-t4-16gb"'
    )
    path = tmp_path / "console.toml"
    path.write_text(text)
    return load_config(config_file=path, environ={})


@pytest.fixture
def engines() -> dict[str, Engine]:
    roles = {"asr": Role.ASR, "tts": Role.TTS, "llm": Role.LLM, "vlm": Role.VLM}
    return {name: FakeEngine(name, role) for name, role in roles.items()}


async def test_the_overview_has_a_memory_bar_per_gpu(client: Client, csrf: dict[str, str]) -> None:
    html = await (await client.get("/")).text()
    for device in ("cuda:0", "cuda:1"):
        assert f'<div class="vram" data-device="{device}">' in html
    assert html.count("of 16.00 GiB (simulated t4-16gb)") == 2


async def test_the_plan_page_places_this_hosts_engines_per_device(
    client: Client, csrf: dict[str, str]
) -> None:
    html = await (await client.get("/plan")).text()
    here = re.search(r'<tr data-gpu="2x simulated t4-16gb".*?</tr>', html, re.S)
    assert here is not None, "no column for this host's two GPUs"
    assert 'data-device="cuda:0">cuda:0 t4-16gb: 3.91 GiB / 12.09 GiB (vlm)' in here.group(0)
    assert 'data-device="cuda:1">cuda:1 t4-16gb: 5.86 GiB / 10.14 GiB (llm)' in here.group(0)
    table = await (await client.get("/api/plan")).json()
    assert table["columns"][0]["placements"] == {
        "asr": "cpu",
        "tts": "cpu",
        "llm": "cuda:1",
        "vlm": "cuda:0",
    }
    assert [d["device"] for d in table["columns"][0]["devices"]] == ["cuda:0", "cuda:1"]
    row = re.search(r'<tr data-engine="vlm">.*?</tr>', html, re.S)
    assert row is not None and 'class="at-gpu">cuda:0<' in row.group(0)
