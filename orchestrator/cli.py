"""Command line: ``python -m orchestrator serve|status|download``.

Operator mistakes (bad config, a taken port, a server that is not running) end with one clear
line on stderr and exit status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path

from orchestrator import __version__
from orchestrator.config import AppConfig, ConfigError, load_config
from orchestrator.downloads import DownloadError, download_artifact
from orchestrator.secrets import load_secrets
from services import nvml
from services.registry import create_engine

log = logging.getLogger("orchestrator")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m orchestrator", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--profile", help="config profile (default: auto from the GPU)")
    common.add_argument("--config", type=Path, help="an extra TOML file layered on top")
    common.add_argument("--log-level", default=os.environ.get("VO_LOG_LEVEL", "INFO"))
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", parents=[common], help="run the voice API and the console")
    status = commands.add_parser("status", parents=[common], help="health of a running server")
    status.add_argument("--url", help="base URL of the voice API (default: from config)")
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    download = commands.add_parser("download", parents=[common], help="fetch configured models")
    download.add_argument("--engine", action="append", help="only this engine (repeatable)")
    return parser


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "httpcore", "filelock", "huggingface_hub.file_download"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _config(args: argparse.Namespace) -> AppConfig:
    gpus = nvml.list_gpus()
    return load_config(
        profile=args.profile,
        config_file=args.config,
        gpu_memory_bytes=gpus[0].total_bytes if gpus else None,
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(args.log_level)
    try:
        config = _config(args)
        if args.command == "serve":
            return _serve(config)
        if args.command == "status":
            return _status(config, args.url, as_json=args.json)
        return _download(config, args.engine)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _serve(config: AppConfig) -> int:
    from orchestrator.server import PortInUse, serve

    secrets = load_secrets(config.state.dir)
    try:
        asyncio.run(serve(config, secrets))
    except PortInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _status(config: AppConfig, url: str | None, *, as_json: bool) -> int:
    import httpx

    secrets = load_secrets(config.state.dir)
    base = url or f"http://127.0.0.1:{config.server.api_port}"
    try:
        response = httpx.get(
            f"{base}/health",
            headers={"Authorization": f"Bearer {secrets.api_keys[0]}"},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        print(f"error: no server answers at {base} ({exc})", file=sys.stderr)
        return 2
    if response.status_code != 200:
        print(
            f"error: {base}/health answered {response.status_code}: {response.text}",
            file=sys.stderr,
        )
        return 2
    body = response.json()
    if as_json:
        print(json.dumps(body, indent=2))
    else:
        print(
            f"status {body['status']}  profile {body['profile']}  "
            f"hibernation {body['hibernation']['state']}  up {body['uptime_s']} s"
        )
        for name, engine in body["engines"].items():
            line = f"  {name:<10} {engine['role']:<6} {engine['state']:<12} {engine['device']:<5}"
            print(f"{line} {engine['model']}")
            if engine["last_error"]:
                print(f"{'':13}{engine['last_error']}")
    return 0 if body["status"] == "ok" else 1


def _download(config: AppConfig, only: list[str] | None) -> int:
    from orchestrator.fleet import spec_for

    unknown = set(only or ()) - set(config.engines)
    if unknown:
        raise ConfigError(f"unknown engine(s): {', '.join(sorted(unknown))}")
    failures = 0
    for name, engine_config in config.engines.items():
        if only and name not in only:
            continue
        spec = spec_for(name, engine_config, config.models.dir)
        artifacts = create_engine(engine_config.adapter, spec).artifacts()
        if not artifacts:
            print(f"{name}: local model {engine_config.model}, nothing to download")
        for artifact in artifacts:
            if not artifact.missing_files(config.models.dir):
                print(
                    f"{name}: {artifact.repo_id} already in {artifact.local_dir(config.models.dir)}"
                )
                continue
            try:
                path = download_artifact(artifact, config.models.dir)
            except DownloadError as exc:
                print(f"{name}: {exc}", file=sys.stderr)
                failures += 1
            else:
                print(f"{name}: {artifact.repo_id} -> {path}")
    return 1 if failures else 0
