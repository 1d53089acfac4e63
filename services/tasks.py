"""Own every background task: named, registered, and cancelled with a deadline on shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class TaskSet:
    """Holds strong references to running tasks, logs their failures, and cancels them all."""

    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(
        self, name: str, coro: Coroutine[Any, Any, Any], *, awaited: bool = False
    ) -> asyncio.Task[Any]:
        """Start a task. ``awaited`` tasks hand their errors to whoever awaits them, so their
        failures are not logged here a second time."""
        task = asyncio.create_task(coro, name=f"{self._owner}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._finished_awaited if awaited else self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    def _finished_awaited(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: its awaiters report it

    def __len__(self) -> int:
        return len(self._tasks)

    async def cancel_all(self, grace_s: float = 5.0) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=grace_s)
        for task in pending:
            log.warning("task %s did not stop within %.1fs", task.get_name(), grace_s)
