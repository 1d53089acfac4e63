"""Granting leases: at once for a loaded engine, after its load for the others.

A lease is granted under the engine's gate, the lock an unload or a park checks leases under,
so a granted engine is never taken off the device while the lease lasts. ``fleet`` owns the
lease's lifetime (``Fleet.lease``); this module only grants.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from orchestrator.fleet.errors import WakeTimeout
from orchestrator.fleet.records import EngineRecord
from services.base import LoadReport

Load = Callable[[str], Awaitable[LoadReport]]


async def grant_all(
    names: list[str],
    records: list[EngineRecord],
    granted: list[EngineRecord],
    timeout_s: float | None,
    load: Load,
) -> None:
    """Grant every lease; only engines that must really load wait, bounded by ``timeout_s``.

    Loaded engines are granted at once, outside the timeout: a busy event loop must never
    turn a request for a loaded engine into a "still loading" refusal.
    """
    for record in records:
        record.waiting += 1
    try:
        pairs = zip(names, records, strict=True)
        cold = [(n, r) for n, r in pairs if not grant_now(r, granted)]
        if not cold:
            return
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(*(grant(n, r, granted, load) for n, r in cold))
        except TimeoutError:
            loading = [n for n, r in cold if not r.loaded]
            waited = time.monotonic() - started
            raise WakeTimeout(loading or [n for n, _ in cold], waited) from None
    finally:
        for record in records:
            record.waiting -= 1


def grant_now(record: EngineRecord, granted: list[EngineRecord]) -> bool:
    """Take a lease without waiting when the engine is loaded and nobody holds its gate."""
    if record.gate.locked() or not record.loaded:
        return False
    record.leases += 1
    granted.append(record)
    return True


async def grant(name: str, record: EngineRecord, granted: list[EngineRecord], load: Load) -> None:
    while True:
        async with record.gate:
            if record.loaded:  # the hot path: no load task when the engine is up
                record.leases += 1
                granted.append(record)
                return
        await load(name)  # a parked engine resumes here
        # loop: it may have been unloaded again between the load and the grant
