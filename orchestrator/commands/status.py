"""``status``: print the health summary of a running server."""

from __future__ import annotations

import argparse
import json
from typing import Any

import httpx

from orchestrator.commands import CommandError
from orchestrator.commands.console_client import describe
from orchestrator.config import AppConfig
from orchestrator.config.secrets import load_secrets
from orchestrator.credits.runway import format_credits

NAME = "status"
HELP = "health of a running server"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="base URL of the voice API (default: from config)")
    parser.add_argument("--json", action="store_true", help="print the raw JSON")


def fetch(config: AppConfig, url: str | None, path: str) -> Any:
    """GET a JSON document from the running server's voice API with our API key."""
    secrets = load_secrets(config.state.dir)
    base = url or f"http://127.0.0.1:{config.server.api_port}"
    try:
        response = httpx.get(
            f"{base}{path}",
            headers={"Authorization": f"Bearer {secrets.api_keys[0]}"},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        raise CommandError(f"no server answers at {base} ({exc})") from None
    if response.status_code != 200:
        raise CommandError(f"{base}{path} answered {response.status_code}: {response.text}")
    return response.json()


def run(args: argparse.Namespace, config: AppConfig) -> int:
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
        print(f"{line} {engine['model']}")
        if engine["last_error"]:
            print(f"{'':13}{engine['last_error']}")
    return 0 if body["status"] == "ok" else 1
