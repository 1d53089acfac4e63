"""Small helpers that several test modules share (a test module never imports another)."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.personaplex import MIMI_WEIGHT, MOSHI_WEIGHT, TOKENIZER

PERSONAPLEX_REPO = "nvidia/personaplex-7b-v1"


def basic(user: str, password: str) -> dict[str, str]:
    """An HTTP Basic ``Authorization`` header."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def fill_hf_cache(hf_home: Path, repo: str = PERSONAPLEX_REPO) -> Path:
    """The hub cache layout huggingface_hub reads offline (refs/main -> snapshots/<rev>/...)."""
    base = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    snapshot = base / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text("0123abcd")
    for name in ("config.json", MOSHI_WEIGHT, MIMI_WEIGHT, TOKENIZER):
        (snapshot / name).write_bytes(b"{}")
    return hf_home


def hold_load(engine: Any, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Make a real engine's load wait for the returned event before it starts: a slow load on
    demand, so a test about waking does not depend on how fast this machine loads."""
    release = asyncio.Event()
    real_load = engine.load

    async def held_load() -> Any:
        await release.wait()
        return await real_load()

    monkeypatch.setattr(engine, "load", held_load)
    return release


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(page: str) -> Samples:
    """Every sample of a Prometheus text page, by its name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
    }


def sample(page: str | Samples, name: str, **labels: str) -> float | None:
    """One sample's value (None when the page has no such series)."""
    found = samples(page) if isinstance(page, str) else page
    return found.get((name, frozenset(labels.items())))
