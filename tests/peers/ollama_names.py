"""Ollama's model names, as its server reads and shows them, for the Ollama peer.

Follows ollama v0.32.15 ``types/model/name.go``: ``ParseName`` splits ``host/namespace/model:tag``
and fills what is missing from ``registry.ollama.ai/library/...:latest``; ``DisplayShortest``
drops the default host (and the default namespace with it), always keeps the tag, and keeps the
case the name was stored in; ``EqualFold`` compares the four parts without case. The server looks
a requested name up among the installed ones without case (``getExistingName`` in
``server/routes.go``), so ``Mistral``, ``library/mistral`` and
``registry.ollama.ai/library/mistral:latest`` all reach a model stored as ``mistral:latest``,
and ``/api/ps`` and ``/api/tags`` show it as ``mistral:latest`` whatever name was asked for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
MISSING = "!MISSING!"  # a part promised by a separator but empty: the name is invalid
_PART = {
    "host": re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,349}$"),
    "namespace": re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,79}$"),
    "model": re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$"),
    "tag": re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$"),
}


def _cut(text: str, sep: str) -> tuple[str, str, bool]:
    """cutPromised: split at the last ``sep``; an empty side becomes MISSING."""
    before, found, after = text.rpartition(sep)
    if not found:
        return text, "", False
    return before or MISSING, after or MISSING, True


@dataclass(frozen=True)
class Name:
    host: str
    namespace: str
    model: str
    tag: str

    @classmethod
    def parse(cls, text: str) -> Name:
        """ParseName: ParseNameBare merged with the defaults."""
        host = namespace = tag = ""
        rest = text
        if rest.rfind(":") > rest.rfind("/"):
            rest, tag, _ = _cut(rest, ":")
        rest, model, promised = _cut(rest, "/")
        if not promised:
            model = rest
        else:
            rest, namespace, promised = _cut(rest, "/")
            if not promised:
                namespace = rest
            else:
                host = rest.split("://", 1)[-1]
        return cls(host or DEFAULT_HOST, namespace or DEFAULT_NAMESPACE, model, tag or DEFAULT_TAG)

    @property
    def valid(self) -> bool:
        parts = {"host": self.host, "namespace": self.namespace}
        parts |= {"model": self.model, "tag": self.tag}
        return all(_PART[kind].match(value) for kind, value in parts.items())

    @property
    def folded(self) -> tuple[str, str, str, str]:
        """The key EqualFold compares."""
        return (self.host.lower(), self.namespace.lower(), self.model.lower(), self.tag.lower())

    def shortest(self) -> str:
        """DisplayShortest: what /api/ps and /api/tags show."""
        prefix = ""
        if self.host.lower() != DEFAULT_HOST:
            prefix = f"{self.host}/{self.namespace}/"
        elif self.namespace.lower() != DEFAULT_NAMESPACE:
            prefix = f"{self.namespace}/"
        return f"{prefix}{self.model}:{self.tag}"
