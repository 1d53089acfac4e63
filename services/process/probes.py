"""Readiness probes for managed processes, and who holds a port.

A probe answers one question once, quickly: is the server ready now? The supervisor repeats it
until a deadline. ``port_holder`` tells the operator which stranger sits on a port we need; the
supervisor only ever reports it, never signals it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import socket
from dataclasses import dataclass

import httpx
import psutil


@dataclass(frozen=True)
class HttpProbe:
    """Ready when GET ``path`` answers ``status`` (and, if set, its JSON ``json_true`` is true)."""

    path: str = "/health"
    status: int = 200
    json_true: str | None = None
    timeout_s: float = 2.0

    async def check(self, host: str, port: int) -> tuple[bool, str]:
        url = f"http://{_host_for_url(host)}:{port}{self.path}"
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s, trust_env=False) as client:
                response = await client.get(url)
        except httpx.HTTPError as exc:
            return False, f"GET {self.path}: {type(exc).__name__}"
        if response.status_code != self.status:
            return False, f"GET {self.path} answered {response.status_code}, want {self.status}"
        if self.json_true is not None:
            try:
                value = json.loads(response.content).get(self.json_true)
            except (ValueError, AttributeError):
                return False, f"GET {self.path}: not a JSON object"
            if value is not True:
                return False, f"GET {self.path}: {self.json_true} is {value!r}"
        return True, "ok"


@dataclass(frozen=True)
class TcpProbe:
    """Ready when the port accepts a TCP connection."""

    timeout_s: float = 1.0

    async def check(self, host: str, port: int) -> tuple[bool, str]:
        try:
            async with asyncio.timeout(self.timeout_s):
                _reader, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError) as exc:
            return False, f"connect: {exc.__class__.__name__}"
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True, "ok"


Probe = HttpProbe | TcpProbe


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def port_free(host: str, port: int) -> bool:
    """True when nothing listens on ``host:port`` (a bind test, as the child would do)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def port_holder(port: int) -> str:
    """Describe the process listening on ``port`` when the OS lets us see it."""
    try:
        connections = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, OSError):
        return "an unknown process"
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid is None:
                return "an unknown process"
            try:
                command = " ".join(psutil.Process(conn.pid).cmdline())[:200]
            except psutil.Error:
                command = "?"
            return f"pid {conn.pid} ({command})"
    return "an unknown process"
