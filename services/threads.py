"""Run blocking model code off the event loop, streaming results back as they come."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_DONE = object()


async def iterate_in_thread(
    make_iterator: Callable[[], Iterator[T]],
) -> AsyncGenerator[T, None]:
    """Yield items of a blocking iterator, each ``next()`` running in a worker thread.

    The iterator is created in the thread too (model calls often start work eagerly). If the
    consumer stops early or is cancelled, the iterator is closed so the engine stops decoding;
    a ``next()`` still running in its thread is waited for first (a generator cannot be closed
    while it executes).
    """
    iterator: Iterator[T] = await asyncio.to_thread(make_iterator)
    running: asyncio.Future[Any] | None = None
    try:
        while True:
            running = asyncio.ensure_future(asyncio.to_thread(next, iterator, _DONE))
            item = await asyncio.shield(running)
            running = None
            if item is _DONE:
                return
            yield item
    finally:
        if running is not None:
            await asyncio.wait([running])
        close = getattr(iterator, "close", None)
        if close is not None:
            await asyncio.to_thread(close)
