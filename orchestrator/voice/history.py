"""A conversation's history, bounded by a token budget so a 90-minute lesson stays flat in memory.

The persona's system prompt is always kept; the oldest turns are dropped first, whole (a user
message with the replies that followed it). After a barge-in the assistant turn holds only the
words actually spoken. Token counts are estimated (about four characters a token for English),
which is all a budget needs; the LLM's own context limit stays well above it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from services.vision import IMAGES, Image

Speaker = Literal["system", "user", "assistant"]
# An image's share of the budget: Ollama counts a CLIP image as 768 tokens (server/prompt.go).
IMAGE_TOKENS = 768


def estimate_tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


@dataclass(frozen=True)
class Message:
    role: Speaker
    content: str
    images: tuple[Image, ...] = ()  # a user's photos (Realtime ``input_image``)

    def to_dict(self, images: bool = True) -> dict[str, Any]:
        message: dict[str, Any] = {"role": self.role, "content": self.content}
        if images and self.images:
            message[IMAGES] = list(self.images)
        return message


class History:
    def __init__(
        self,
        system_prompt: str,
        *,
        budget_tokens: int = 3000,
        count: Callable[[str], int] = estimate_tokens,
    ) -> None:
        self.system = Message("system", system_prompt)
        self.budget_tokens = budget_tokens
        self._count = count
        self._turns: deque[Message] = deque()
        self._tokens = 0
        self.dropped = 0

    def add(
        self,
        role: Literal["user", "assistant"],
        content: str,
        images: tuple[Image, ...] = (),
    ) -> None:
        content = content.strip()
        if not content and not images:
            return
        self._turns.append(Message(role, content, images))
        self._tokens += self._size(self._turns[-1])
        self._trim()

    def has_images(self) -> bool:
        """Whether a turn still in the history holds an image (the VLM must answer)."""
        return any(m.images for m in self._turns)

    def _size(self, message: Message) -> int:
        return self._count(message.content) + IMAGE_TOKENS * len(message.images)

    def replace_last_assistant(self, old: str, new: str) -> None:
        """Shorten the latest assistant turn to what the user actually heard."""
        for index in range(len(self._turns) - 1, -1, -1):
            message = self._turns[index]
            if message.role == "assistant" and message.content == old.strip():
                self._tokens += self._count(new) - self._count(message.content)
                if new.strip():
                    self._turns[index] = Message("assistant", new.strip())
                else:
                    del self._turns[index]
                return

    def messages(self, images: bool = True) -> list[dict[str, Any]]:
        """The conversation for a model; ``images=False`` leaves the photos out (an LLM)."""
        return [self.system.to_dict(), *(m.to_dict(images) for m in self._turns)]

    @property
    def tokens(self) -> int:
        return self._count(self.system.content) + self._tokens

    def __len__(self) -> int:
        return len(self._turns)

    def _trim(self) -> None:
        budget = self.budget_tokens - self._count(self.system.content)
        while self._tokens > budget and len(self._turns) > 1:
            self._drop_oldest_turn()

    def _drop_oldest_turn(self) -> None:
        """Drop the oldest message and any replies up to the next user message."""
        first = self._turns.popleft()
        self._tokens -= self._size(first)
        self.dropped += 1
        while self._turns and self._turns[0].role != "user" and len(self._turns) > 1:
            reply = self._turns.popleft()
            self._tokens -= self._size(reply)
            self.dropped += 1
