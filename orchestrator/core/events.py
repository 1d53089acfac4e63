"""An in-process event bus: transitions, loads and operator actions, streamed to the console.

Publishing never blocks: each subscriber has a bounded queue, and a subscriber that falls
behind loses its oldest events (and is told how many) rather than slowing the publisher.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    type: str
    data: dict[str, Any]
    at: float = field(default_factory=time.time)


class Subscription:
    def __init__(self, bus: EventBus, maxsize: int) -> None:
        self._bus = bus
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.dropped = 0

    def offer(self, event: Event) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            yield await self.queue.get()

    def close(self) -> None:
        self._bus._subscribers.discard(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    def __init__(self, history: int = 200) -> None:
        self._subscribers: set[Subscription] = set()
        self._recent: list[Event] = []
        self._history = history

    def publish(self, type_: str, **data: Any) -> Event:
        event = Event(type_, data)
        self._recent = [*self._recent[-(self._history - 1) :], event]
        for subscription in list(self._subscribers):
            subscription.offer(event)
        return event

    def subscribe(self, maxsize: int = 256) -> Subscription:
        subscription = Subscription(self, maxsize)
        self._subscribers.add(subscription)
        return subscription

    def recent(self, type_: str | None = None) -> list[Event]:
        return [e for e in self._recent if type_ is None or e.type == type_]


async def wait_for_event(event: asyncio.Event, timeout_s: float | None) -> None:
    """Wait for ``event`` up to ``timeout_s``. ``asyncio.timeout``, not ``wait_for``: on 3.11
    ``wait_for`` can swallow a cancellation that lands as its timeout fires."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()
