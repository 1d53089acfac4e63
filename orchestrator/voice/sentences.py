"""Cut streamed LLM text into sentences as they complete, so each can go to TTS at once.

A sentence ends at ``.``, ``!``, ``?`` or ``…`` (with any closing quotes or brackets) followed
by whitespace, or at a line break. Decimal numbers (``3.14``), ordinals and list numbers
(``2. Next``), common abbreviations (``Mr.``, ``e.g.``, ``etc.``) and initials (``J. R. R.``) do
not end one. Text is fed in arbitrary pieces; the cut is the same however it was split, because
a boundary is only decided once the character after it has arrived.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

ABBREVIATIONS = frozenset(
    ("mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "cf",
     "approx", "fig", "no", "vol", "ca", "mt", "ave", "dept", "est", "jan", "feb", "mar", "apr",
     "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "mon", "tue", "wed", "thu", "fri",
     "sat", "sun", "u.s", "a.m", "p.m")
)  # fmt: skip
_END = re.compile(r"""([.!?…]+)(["'”’)\]]*)(\s+)|(\n+)""")
_WORD_BEFORE = re.compile(r"([\w.]+)$")


class SentenceSplitter:
    """Feed text deltas; receive the sentences they complete. ``flush()`` gives the rest."""

    def __init__(self, *, max_chars: int = 400) -> None:
        self._buffer = ""
        self._max_chars = max_chars

    def feed(self, text: str) -> Iterator[str]:
        self._buffer += text
        while True:
            cut = self._next_boundary()
            if cut is not None:
                sentence, self._buffer = self._buffer[:cut].strip(), self._buffer[cut:]
                if sentence:
                    yield sentence
            elif len(self._buffer) > self._max_chars:
                yield from self._force_cut()
            else:
                break

    def flush(self) -> Iterator[str]:
        rest, self._buffer = self._buffer.strip(), ""
        if rest:
            yield rest

    def _next_boundary(self) -> int | None:
        for match in _END.finditer(self._buffer):
            if match.start() >= self._max_chars:
                return None  # too far: a forced cut comes first, however the text was split
            if match.group(4):  # a line break always ends a sentence
                return match.end()
            if _ends_sentence(self._buffer[: match.start(1)], match.group(1)):
                return match.end()
        return None

    def _force_cut(self) -> Iterator[str]:
        """A run-on without punctuation: cut at the last comma or space so TTS can start."""
        window = self._buffer[: self._max_chars]
        cut = max(window.rfind(", "), window.rfind("; "))
        cut = cut + 1 if cut > 0 else window.rfind(" ")
        if cut <= 0:
            cut = self._max_chars
        sentence, self._buffer = self._buffer[:cut].strip(), self._buffer[cut:]
        if sentence:
            yield sentence


def _ends_sentence(before: str, punctuation: str) -> bool:
    if punctuation != ".":
        return True
    word_match = _WORD_BEFORE.search(before)
    if word_match is None:
        return True
    word = word_match.group(1).lower()
    if word.rstrip(".") in ABBREVIATIONS or word in ABBREVIATIONS:
        return False
    if len(word) == 1 and word.isalpha():  # an initial: "J. Smith"
        return False
    # "2. Next" at the very start is a list item, not the end of a sentence
    return not (word.isdigit() and len(before) == len(word))


def split_all(text: str) -> list[str]:
    """Every sentence of a complete text (convenience for tests and whole-text TTS)."""
    splitter = SentenceSplitter()
    return [*splitter.feed(text), *splitter.flush()]
