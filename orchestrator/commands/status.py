"""``status``: print the health summary of a running server, or of a gateway and its host.

``--url`` may name the voice API of a server or a gateway (the app's one address). A gateway
is recognised by its ``GET /v1/host`` answering 200 (a server answers 404 there), or named
with ``--gateway``; its status is the host's state and ETA, the last failure, the billed hours
and the runway (``host_status``), read without waking the host.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import httpx

from orchestrator.commands import CommandError
from orchestrator.commands.console_client import describe
from orchestrator.commands.host_status import describe_gateway
from orchestrator.config import AppConfig
from orchestrator.config.secrets import load_secrets
from orchestrator.credits.runway import format_credits

NAME = "status"
HELP = "health of a running server, or of a gateway and its GPU host"
HOST_PATH = "/v1/host"
LEDGER_PATH = "/v1/host/ledger"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", help="base URL of the voice API or of a gateway (default: from config)"
    )
    parser.add_argument(
        "--gateway",
        action="store_true",
        help="the URL is a gateway (found by itself when GET /v1/host answers)",
    )
    parser.add_argument("--json", action="store_true", help="print the raw JSON")


def _get(config: AppConfig, url: str | None, path: str) -> tuple[str, httpx.Response]:
    secrets = load_secrets(config.state.dir)
    base = (url or f"http://127.0.0.1:{config.server.api_port}").rstrip("/")
    try:
        response = httpx.get(
            f"{base}{path}",
            headers={"Authorization": f"Bearer {secrets.api_keys[0]}"},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        raise CommandError(f"no server answers at {base} ({exc})") from None
    return base, response


def fetch(config: AppConfig, url: str | None, path: str) -> Any:
    """GET a JSON document from the running server's (or gateway's) API with our API key."""
    base, response = _get(config, url, path)
    if response.status_code != 200:
        raise CommandError(f"{base}{path} answered {response.status_code}: {response.text}")
    return response.json()


def gateway_host(config: AppConfig, url: str | None) -> dict[str, Any] | None:
    """The host's snapshot when ``url`` is a gateway; None when it is a server (404)."""
    base, response = _get(config, url, HOST_PATH)
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise CommandError(f"{base}{HOST_PATH} answered {response.status_code}: {response.text}")
    body = response.json()
    return body if isinstance(body, dict) and "state" in body else None


def run(args: argparse.Namespace, config: AppConfig) -> int:
    host = fetch(config, args.url, HOST_PATH) if args.gateway else gateway_host(config, args.url)
    if host is not None:
        return _gateway(args, config, host)
    body = fetch(config, args.url, "/health")
    if args.json:
        print(json.dumps(body, indent=2))
        return 0 if body["status"] == "ok" else 1
    print(f"status {body['status']}  profile {body['profile']}  up {body['uptime_s']} s")
    print(describe(body["hibernation"]))
    if body.get("credits"):
        print(format_credits(body["credits"]))
    for name, engine in body["engines"].items():
        line = f"  {name:<10} {engine['role']:<6} {engine['state']:<12} {engine['device']:<5}"
        pinned = "  [pinned]" if engine.get("pinned") else ""
        print(f"{line} {engine['model']}{pinned}")
        if engine["last_error"]:
            print(f"{'':13}{engine['last_error']}")
    return 0 if body["status"] == "ok" else 1


def _gateway(args: argparse.Namespace, config: AppConfig, host: dict[str, Any]) -> int:
    """A gateway's status: 1 while its host's last start failed, else 0 (stopped is normal)."""
    ledger = fetch(config, args.url, LEDGER_PATH)
    if args.json:
        print(json.dumps({"host": host, "ledger": ledger}, indent=2))
    else:
        print(describe_gateway(host, ledger))
    return 1 if host["state"] == "failed" else 0
