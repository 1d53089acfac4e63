"""The plan page: the planner's fit table for this host's GPU and every named type, with the
same figures as ``python -m orchestrator plan``."""

from __future__ import annotations

import re

import pytest

from orchestrator.app.runtime import Runtime
from orchestrator.gpu.catalog import catalog_files, load_catalog
from orchestrator.gpu.gpu_types import GPU_TYPES
from orchestrator.gpu.plan_report import build_report, configured_rows, find_target
from tests.console.conftest import Client

# An LLM of 20 GB on the GPU: too big for a T4 or a 24 GB card, fine on an A100.
BIG_LLM = """
[engines.llm]
role = "llm"
adapter = "ollama"
model = "big-llm"
device = "cuda"
priority = 70
estimate_vram_mb = 20000
"""


@pytest.fixture
def extra_toml() -> str:
    return BIG_LLM


def row(html: str, gpu: str) -> str:
    match = re.search(rf'<tr data-gpu="{re.escape(gpu)}".*?</tr>', html, re.S)
    assert match, f"no row for {gpu}"
    return match.group(0)


async def test_fit_table_has_this_host_and_every_gpu_type(
    client: Client, csrf: dict[str, str]
) -> None:
    response = await client.get("/plan")
    assert response.status == 200
    html = await response.text()
    assert "this host" in row(html, "simulated GPU")
    for name in GPU_TYPES:
        assert "Month, 24/7" in row(html, name)
    assert "all at once" not in row(html, "t4-16gb")  # 20 GB does not fit in 16
    assert "mode" in row(html, "t4-16gb")
    assert "all at once" in row(html, "a100-40gb")
    assert "$2,153.50" in row(html, "a100-40gb")  # $2.95/h, 24/7, 365/12 days a month
    placements = re.search(r'<tr data-engine="llm">.*?</tr>', html, re.S)
    assert placements and 'class="at-gpu">gpu<' in placements.group(0)


async def test_the_table_is_the_cli_plan(
    client: Client, csrf: dict[str, str], runtime: Runtime
) -> None:
    """Each column is what ``plan --gpu TYPE --json`` prints, from the same functions."""
    table = await (await client.get("/api/plan")).json()
    assert [c["name"] for c in table["columns"]] == ["simulated GPU", *GPU_TYPES]
    assert table["columns"][0]["source"] == "detected"
    config = runtime.config
    rows, notes = configured_rows(config, load_catalog(catalog_files(config.gpu.catalog)), None)
    for column in table["columns"][1:]:
        cli = build_report(config, find_target(column["name"], config, None), rows, notes)
        assert column["cost"] == cli["cost"]
        assert column["all_fit"] == cli["all_fit"]
        assert column["modes"] == cli["modes"]
    llm = next(e for e in table["engines"] if e["name"] == "llm")
    assert llm["vram_bytes"] == 20000 * 1024**2
    assert llm["placements"][-1] == "gpu"  # the last column: an H100
