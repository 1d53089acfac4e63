"""Opening a listening port for an aiohttp app, with the one error an operator can act on.

Shared by the server (voice API and console) and the gateway, which must not import the server.
"""

from __future__ import annotations

import errno
from typing import Any

from aiohttp import web

from services.errors import VoiceOrchestratorError


class PortInUse(VoiceOrchestratorError):
    """A configured port is taken by another process."""

    code = "port_in_use"


def runner_settings(idle_timeout_s: float, shutdown_grace_s: float) -> dict[str, Any]:
    """``AppRunner`` keywords: no access log, idle connections closed, a shutdown grace."""
    return {
        "access_log": None,
        "keepalive_timeout": idle_timeout_s,
        "shutdown_timeout": shutdown_grace_s,
    }


async def start_site(runner: web.AppRunner, host: str, port: int, key: str) -> None:
    """Listen on ``host:port``; ``PortInUse`` names the config key (``key``) and its variable.
    The shutdown grace is the runner's (``AppRunner(shutdown_timeout=...)``)."""
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            env = "VO__" + key.upper().replace(".", "__")
            raise PortInUse(
                f"port {port} ({key}) on {host} is already in use by another process; "
                f"stop it or choose another port with {env}=<port>"
            ) from None
        raise
