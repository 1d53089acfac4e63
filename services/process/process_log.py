"""A child process's output: read without pause, kept in a bounded ring, followed by the console.

The seed system never read its children's pipes, so a chatty server blocked on a full pipe and
hung. Here every byte is taken as it arrives (the supervisor's pipe protocol never pauses
reading), split into lines (``LineSplitter``), and each line lands in a
ring of the last N lines (the memory is bounded however much the child writes: long lines are cut
too) and in the Python log, rate-limited so a child that floods cannot flood ours.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class LogLine:
    seq: int
    at: float  # wall clock, seconds since the epoch
    stream: str  # "stdout", "stderr" or "supervisor"
    text: str


class _Follower:
    def __init__(self, capacity: int) -> None:
        self.lines: deque[LogLine] = deque(maxlen=capacity)
        self.dropped = 0
        self.wake = asyncio.Event()


class LogRing:
    """The last ``max_lines`` lines of one process, and live followers of new ones."""

    def __init__(
        self,
        max_lines: int = 500,
        *,
        max_line_chars: int = 2000,
        follower_capacity: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lines: deque[LogLine] = deque(maxlen=max_lines)
        self._max_line_chars = max_line_chars
        self._follower_capacity = follower_capacity
        self._followers: set[_Follower] = set()
        self._clock = clock
        self._seq = 0

    def append(self, stream: str, text: str) -> LogLine:
        if len(text) > self._max_line_chars:
            text = text[: self._max_line_chars] + " …"
        self._seq += 1
        line = LogLine(self._seq, self._clock(), stream, text)
        self._lines.append(line)
        for follower in self._followers:
            if len(follower.lines) == follower.lines.maxlen:
                follower.dropped += 1
            follower.lines.append(line)
            follower.wake.set()
        return line

    def tail(self, n: int | None = None) -> list[LogLine]:
        lines = list(self._lines)
        return lines if n is None else lines[-n:] if n > 0 else []

    def texts(self, n: int | None = None) -> list[str]:
        return [line.text for line in self.tail(n)]

    @property
    def total(self) -> int:
        """Lines seen since the process was first started (the ring keeps only the last ones)."""
        return self._seq

    async def follow(self, *, backlog: int = 50) -> AsyncGenerator[LogLine, None]:
        """Yield the last ``backlog`` lines, then each new line as it comes, until closed.

        A follower that falls behind by more than its capacity loses the oldest lines and is
        told how many with one ``supervisor`` line, instead of slowing the reader down.
        """
        follower = _Follower(self._follower_capacity)
        follower.lines.extend(self.tail(backlog))
        self._followers.add(follower)
        try:
            while True:
                while follower.lines:
                    if follower.dropped:
                        skipped, follower.dropped = follower.dropped, 0
                        yield LogLine(0, self._clock(), "supervisor", f"({skipped} lines skipped)")
                    yield follower.lines.popleft()
                follower.wake.clear()
                await follower.wake.wait()
        finally:
            self._followers.discard(follower)


class RateLimitedLog:
    """Pass lines to a logger at most ``per_second`` a second; count and report the rest."""

    def __init__(
        self,
        logger: logging.Logger,
        prefix: str,
        *,
        per_second: float = 50.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._prefix = prefix
        self._rate = per_second
        self._tokens = per_second
        self._clock = clock
        self._last = clock()
        self._suppressed = 0

    def __call__(self, level: int, text: str) -> None:
        now = self._clock()
        self._tokens = min(self._rate, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1:
            self._suppressed += 1
            return
        self._tokens -= 1
        if self._suppressed:
            self._logger.warning("%s: (%d lines not logged)", self._prefix, self._suppressed)
            self._suppressed = 0
        self._logger.log(level, "%s: %s", self._prefix, text)


class LineSplitter:
    """Bytes in, complete lines out; a line longer than ``max_line_bytes`` comes out in pieces,
    so a child that never writes a newline still cannot grow our memory."""

    def __init__(self, max_line_bytes: int = 8192) -> None:
        self._max = max_line_bytes
        self._pending = b""

    def feed(self, data: bytes) -> list[str]:
        self._pending += data
        *complete, self._pending = self._pending.split(b"\n")
        lines = [_text(raw) for raw in complete]
        while len(self._pending) > self._max:
            lines.append(_text(self._pending[: self._max]))
            self._pending = self._pending[self._max :]
        return lines

    def flush(self) -> list[str]:
        rest, self._pending = self._pending, b""
        return [_text(rest)] if rest else []


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\r").decode("utf-8", errors="replace")
