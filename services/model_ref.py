"""Tell a local model path from a hub reference in an engine's ``model`` setting."""

from __future__ import annotations

from pathlib import Path


def local_path(model: str) -> Path | None:
    """The path ``model`` names on disk, or None when it is a hub reference.

    Anything absolute, relative with ``./`` or ``../``, starting with ``~``, or existing on disk is
    a path; ``owner/name`` that does not exist is a hub repository id.
    """
    if model.startswith(("/", "./", "../", "~")) or Path(model).exists():
        return Path(model).expanduser()
    return None
