"""Whose pages may change state: the console's public origin, and only it.

A state-changing request that sends ``Origin`` must come from the address browsers use for this
console. That address is configured (``server.console_public_origin``, e.g. behind a TLS proxy)
or, unset, derived from where the console listens: ``http://<console_host>:<console_port>``,
and for a loopback or wildcard bind the loopback names (``127.0.0.1``, ``localhost``,
``[::1]``), which is how an SSH tunnel reaches it. The request's own ``Host`` header is never
the reference: a client chooses it, so comparing with it proves nothing.
"""

from __future__ import annotations

from orchestrator.config import ServerConfig

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
LOOPBACK_BINDS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0", "::", ""})


def allowed_origins(server: ServerConfig) -> frozenset[str]:
    """The ``Origin`` values a state-changing request to the server's console may carry."""
    return origins_of(server.console_host, server.console_port, server.console_public_origin)


def origins_of(host: str, port: int, public_origin: str | None = None) -> frozenset[str]:
    """The ``Origin`` values for a console bound at ``host:port`` (or published at
    ``public_origin``): the server's, and the gateway's."""
    if public_origin is not None:
        return frozenset({public_origin})
    if host.lower() in LOOPBACK_BINDS:
        names: tuple[str, ...] = LOOPBACK_NAMES
    else:
        names = (f"[{host}]" if ":" in host else host.lower(),)
    return frozenset(f"http://{name}:{port}" for name in names)


def origin_refusal(origin: str | None, allowed: frozenset[str]) -> str | None:
    """Why a request with this ``Origin`` header is refused; None when it may go on."""
    if origin is None or origin in allowed:
        return None
    expected = " or ".join(sorted(allowed))
    return (
        f"cross-origin request from {origin} refused: this console is {expected} "
        "(set server.console_public_origin to the address you open it at)"
    )
