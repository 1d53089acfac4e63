"""``download``: fetch the configured engines' models from the hub, with progress."""

from __future__ import annotations

import argparse
import sys

from orchestrator.commands import CommandError
from orchestrator.config import AppConfig

NAME = "download"
HELP = "fetch configured models"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", action="append", help="only this engine (repeatable)")


def run(args: argparse.Namespace, config: AppConfig) -> int:
    # imported here: the CLI imports every command to build its parser, and the gateway's VM
    # must not load the adapters to run its own command
    from orchestrator.fleet.downloads import DownloadError, download_artifact
    from orchestrator.fleet.records import spec_for
    from services.registry import create_engine

    only: list[str] | None = args.engine
    unknown = set(only or ()) - set(config.engines)
    if unknown:
        raise CommandError(f"unknown engine(s): {', '.join(sorted(unknown))}")
    failures = 0
    models_dir = config.models.dir
    for name, engine_config in config.engines.items():
        if only and name not in only:
            continue
        spec = spec_for(name, engine_config, models_dir)
        artifacts = create_engine(engine_config.adapter, spec).artifacts()
        if not artifacts:
            print(f"{name}: local model {engine_config.model}, nothing to download")
        for artifact in artifacts:
            if not artifact.missing_files(models_dir):
                print(f"{name}: {artifact.repo_id} already in {artifact.local_dir(models_dir)}")
                continue
            try:
                path = download_artifact(artifact, models_dir)
            except DownloadError as exc:
                print(f"{name}: {exc}", file=sys.stderr)
                failures += 1
            else:
                print(f"{name}: {artifact.repo_id} -> {path}")
    return 1 if failures else 0
