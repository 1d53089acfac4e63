"""The vision-language role (``Role.VLM``): chat about images.

A ``VisionModel`` is a chat model whose messages may carry images. Its ``chat`` keeps the LLM
role's call (``ChatModel.chat``: streamed text deltas, ``options``, ``usage`` where counted), so
whatever drives an LLM (the chat route, a cascade reply) drives a VLM the same way; a message
may add ``"images"``: a list of ``Image``, in the order the user gave them, each already checked
by the API (a real PNG, JPEG, WebP or GIF within the configured byte and pixel limits).

Kept apart from ``services.base`` (which states the other roles) only for its length; the
contract is the same: adapters implement it, everything above the fleet reaches VLM engines
through it and never an adapter.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from services.base import Engine

IMAGES = "images"  # the message key that holds a message's images


@dataclass(frozen=True)
class Image:
    """One checked image: the file's bytes as sent, its format and its size in pixels."""

    data: bytes = field(repr=False)
    format: str  # Pillow's name in lower case: png, jpeg, webp, gif
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def images_of(message: dict[str, Any]) -> list[Image]:
    """The images a message carries (none for a plain text message)."""
    found = message.get(IMAGES) or []
    return [image for image in found if isinstance(image, Image)]


def has_images(messages: list[dict[str, Any]]) -> bool:
    return any(images_of(m) for m in messages)


@runtime_checkable
class VisionModel(Engine, Protocol):
    """The VLM role. ``vision = True`` tells it from an LLM (both have ``chat``)."""

    vision: bool

    def chat(
        self, messages: list[dict[str, Any]], *, options: dict[str, Any] | None = None
    ) -> AsyncGenerator[str, None]:
        """Stream the reply's text deltas about the messages and their images; closing the
        iterator stops generation. ``options`` as ``ChatModel.chat``'s."""
        ...
