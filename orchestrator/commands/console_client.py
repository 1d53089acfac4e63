"""Talk to a running server's console admin API, as the CLI's operator commands do.

Requests carry HTTP Basic and the device cookie ``cli``, minted with the console's session key
from the state directory: the sign-in throttle then counts the CLI apart from other local
clients, so a flood of bad sign-ins from another process does not lock the CLI out.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx

from console.session import DEVICE_COOKIE, KEY_FILE, SessionSigner
from orchestrator.commands import CommandError
from orchestrator.config import AppConfig
from orchestrator.config.secrets import load_secrets, read_private_file


def device_headers(config: AppConfig) -> dict[str, str]:
    """The CLI's device cookie, once the console has made its session key; else nothing."""
    key = config.state.dir / KEY_FILE
    if not key.exists():
        return {}
    signer = SessionSigner(read_private_file(key).encode(), clock=time.time)
    return {"Cookie": f"{DEVICE_COOKIE}={signer.issue_device('cli')}"}


def post(config: AppConfig, path: str, body: dict[str, Any] | None = None) -> Any:
    secrets = load_secrets(config.state.dir)
    host = config.server.console_host
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = f"http://{host}:{config.server.console_port}"
    try:
        response = httpx.post(
            f"{base}{path}",
            json=body or {},
            auth=("admin", secrets.console_password),
            headers=device_headers(config),
            timeout=120,
        )
    except httpx.HTTPError as exc:
        raise CommandError(f"no console answers at {base} ({exc})") from None
    if response.status_code != 200:
        raise CommandError(f"{path} answered {response.status_code}: {response.text}")
    return response.json()


def describe(summary: dict[str, Any]) -> str:
    """The hibernation summary in a few lines: the state, keep-awake, pins, and (after
    ``hibernate``) what stayed loaded and why."""
    line = f"hibernation {summary['state']}, idle {summary['idle_s']} s"
    if summary.get("next_step_in_s") is not None:
        line += f", next step in {summary['next_step_in_s']} s"
    until = summary.get("keep_awake_until")
    if until:
        stamp = datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        line += f", kept awake until {stamp}"
    lines = [line]
    if summary.get("pinned"):
        lines.append(f"pinned (never unloaded when idle): {', '.join(summary['pinned'])}")
    for engine in summary.get("stayed_loaded", []):
        lines.append(f"  still loaded: {engine['engine']} ({engine['role']}): {engine['why']}")
    if "stayed_loaded" in summary and not summary["stayed_loaded"]:
        lines.append("  nothing stayed loaded")
    return "\n".join(lines)
