"""Where a server process finds the Hugging Face hub cache and token, and what the cache holds.

Servers in environments of their own (PersonaPlex, VibeVoice) fetch their weights through
huggingface_hub themselves. Before starting one, the adapter checks what it will find, with the
server's environment and huggingface_hub's own rules, so that an offline host reports the
missing files instead of a server that dies deep in its start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class HubPaths:
    """Where a process with a given environment finds the HF cache and token."""

    cache: Path
    token_file: Path
    token_set: bool  # HF_TOKEN (or the older HUGGING_FACE_HUB_TOKEN) in the environment


def hub_paths(env: Mapping[str, str]) -> HubPaths:
    """huggingface_hub's rules (``constants.py``, the same from the 0.24 the server pins to 1.x)
    applied to ``env``: HF_HOME defaults to $XDG_CACHE_HOME/huggingface; HF_HUB_CACHE (or the
    older HUGGINGFACE_HUB_CACHE) wins over HF_HOME/hub; HF_TOKEN_PATH over HF_HOME/token."""
    xdg = env.get("XDG_CACHE_HOME") or "~/.cache"
    home = Path(env.get("HF_HOME") or f"{xdg}/huggingface").expanduser()
    cache = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    token_file = env.get("HF_TOKEN_PATH")
    return HubPaths(
        cache=Path(cache).expanduser() if cache else home / "hub",
        token_file=Path(token_file).expanduser() if token_file else home / "token",
        token_set=bool(env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN")),
    )


def cached_file(repo: str, name: str, cache: Path) -> Path | None:
    """The file of ``repo``'s current revision in ``cache``, or None (blocking, no network)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, name, cache_dir=str(cache))
    return Path(found) if isinstance(found, str) else None
