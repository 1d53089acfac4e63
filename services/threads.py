"""Run blocking model code off the event loop, streaming results back as they come."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


async def iterate_in_thread(
    make_iterator: Callable[[], Iterator[T]],
) -> AsyncGenerator[T, None]:
    """Yield items of a blocking iterator, each ``next()`` running in a worker thread.

    The iterator is created in the thread too (model calls often start work eagerly). If the
    consumer stops early or is cancelled, the iterator is closed so the engine stops decoding.
    """
    iterator: Iterator[T] = await asyncio.to_thread(make_iterator)
    try:
        while True:
            item = await asyncio.to_thread(next, iterator, _DONE)
            if item is _DONE:
                return
            yield item  # type: ignore[misc]
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            await asyncio.to_thread(close)
