"""How Ollama names models and says what it runs with: pure helpers of the Ollama adapter.

Read from ollama v0.32.15: ``types/model/name.go`` (``ParseName``'s defaults; names compared
with ``EqualFold``) and ``envconfig/config.go`` (the ``server config`` line ``serve`` logs with
the environment it read, before it listens).
"""

from __future__ import annotations

import re

DEFAULT_HOST, DEFAULT_NAMESPACE, DEFAULT_TAG = "registry.ollama.ai", "library", "latest"
SERVER_CONFIG = re.compile(r'msg="server config".*?\bOLLAMA_NUM_PARALLEL:(\d+)')


def model_key(name: str) -> tuple[str, str, str, str]:
    """A model name as Ollama tells names apart: ``ParseName`` splits ``host/namespace/model:tag``
    and fills what is missing (registry.ollama.ai, library, latest); ``EqualFold`` ignores case.
    So ``Mistral``, ``library/mistral`` and ``registry.ollama.ai/library/mistral:latest`` are
    the model ``/api/ps`` shows as ``mistral:latest``."""
    rest, tag = name.strip(), ""
    if rest.rfind(":") > rest.rfind("/"):
        rest, _, tag = rest.rpartition(":")
    rest, _, model = rest.rpartition("/")
    host, _, namespace = rest.rpartition("/")
    host = host.split("://", 1)[-1]
    return (
        (host or DEFAULT_HOST).lower(),
        (namespace or DEFAULT_NAMESPACE).lower(),
        model.lower(),
        (tag or DEFAULT_TAG).lower(),
    )


def server_parallelism(lines: list[str]) -> int | None:
    """OLLAMA_NUM_PARALLEL from the last ``server config`` line Ollama logged (0 counts as 1,
    as its scheduler takes it), or None when there is none."""
    for line in reversed(lines):
        found = SERVER_CONFIG.search(line)
        if found:
            return max(int(found.group(1)), 1)
    return None
