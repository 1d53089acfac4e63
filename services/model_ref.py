"""Tell a local model path from a hub reference in an engine's ``model`` setting, and say which
weight files a model folder still lacks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SHARD_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def local_path(model: str) -> Path | None:
    """The path ``model`` names on disk, or None when it is a hub reference.

    Anything absolute, relative with ``./`` or ``../``, starting with ``~``, or existing on disk is
    a path; ``owner/name`` that does not exist is a hub repository id.
    """
    if model.startswith(("/", "./", "../", "~")) or Path(model).exists():
        return Path(model).expanduser()
    return None


def missing_weights(folder: Path, globs: tuple[str, ...]) -> list[str]:
    """The weight files ``folder`` lacks: every shard its index lists (``model.safetensors.
    index.json``, as transformers writes sharded checkpoints), or, with no index, ``globs``
    themselves when no file matches any of them (``*.safetensors``)."""
    if not globs:
        return []
    for index_name in SHARD_INDEXES:
        index = folder / index_name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (ValueError, KeyError, TypeError, AttributeError):
                return [f"{index_name} (unreadable)"]
            return [name for name in shards if not (folder / name).is_file()]
    if any(next(folder.glob(pattern), None) is not None for pattern in globs):
        return []
    return [" or ".join(globs) + " (the weights)"]


@dataclass(frozen=True)
class ModelArtifact:
    """Files an engine needs from a model hub, and where they live once downloaded."""

    repo_id: str
    allow_patterns: tuple[str, ...]
    required_files: tuple[str, ...]
    revision: str | None = None
    # The weights, by pattern (their names vary: one file, or shards an index lists).
    weight_globs: tuple[str, ...] = ()

    def local_dir(self, models_dir: Path) -> Path:
        return models_dir / self.repo_id.replace("/", "--")

    def missing_files(self, models_dir: Path) -> list[str]:
        base = self.local_dir(models_dir)
        named = [name for name in self.required_files if not (base / name).is_file()]
        return named + missing_weights(base, self.weight_globs)
