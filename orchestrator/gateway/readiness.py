"""Is the orchestrator on the host ready? Its ``/health/ready``, asked with the gateway's key.

The machine running is not enough: the server must be up and its voice route loadable. Reading
health never counts as voice activity on the host, so polling it keeps nothing awake.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp

ReadyProbe = Callable[[str], Awaitable[bool]]


class HttpReadyProbe:
    def __init__(self, host_key: str, *, timeout_s: float = 3.0) -> None:
        self._headers = {"Authorization": f"Bearer {host_key}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, url: str) -> bool:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.get(f"{url}/health/ready", headers=self._headers) as reply:
                return reply.status == 200
        except (TimeoutError, aiohttp.ClientError, OSError):
            return False

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
