"""Opening a listening port for an aiohttp app, with the one error an operator can act on.

Shared by the server (voice API and console) and the gateway, which must not import the server.
"""

from __future__ import annotations

import errno

from aiohttp import web

from services.errors import VoiceOrchestratorError


class PortInUse(VoiceOrchestratorError):
    """A configured port is taken by another process."""

    code = "port_in_use"


async def start_site(runner: web.AppRunner, host: str, port: int, key: str, grace: float) -> None:
    """Listen on ``host:port``; ``PortInUse`` names the config key (``key``) and its variable."""
    site = web.TCPSite(runner, host, port, shutdown_timeout=grace)
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
