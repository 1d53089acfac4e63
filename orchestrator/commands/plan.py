"""``plan``: which engines of the profile fit on the GPU, the modes when not all do, and the cost.

For a named GPU type (``--gpu t4-16gb``) or the one NVML finds (none: CPU placements only).
``--add MODEL`` plans a catalog model the profile does not configure yet. The report itself is
``orchestrator.gpu.plan_report``'s, the one the console's plan page shows.
"""

from __future__ import annotations

import argparse
import json

from orchestrator.commands import CommandError
from orchestrator.config import AppConfig
from orchestrator.config.loading import list_profiles, load_config
from orchestrator.gpu.catalog import UnknownModel
from orchestrator.gpu.plan_report import (
    build_report,
    catalog_row,
    find_target,
    format_report,
    planning_rows,
)
from orchestrator.gpu.planner import PlanError
from orchestrator.gpu.telemetry import GPU_TYPES, GpuBackend

NAME = "plan"
HELP = "which engines fit on the GPU, the modes when not all do, and the cost"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gpu", choices=sorted(GPU_TYPES), help="plan for this GPU type")
    parser.add_argument(
        "--add",
        action="append",
        default=[],
        metavar="MODEL[:PRECISION][@PRIORITY]",
        help="also plan this catalog model (repeatable), e.g. personaplex-7b@90",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def profile_for_gpu(args: argparse.Namespace, config: AppConfig) -> tuple[AppConfig, str | None]:
    """With ``--gpu NAME`` and no ``--profile``, the profile made for that GPU when there is
    one (planning the CPU profile's engines on a T4 answers nothing anyone asked)."""
    if not args.gpu or getattr(args, "profile", None) or config.profile == args.gpu:
        return config, None
    if args.gpu not in list_profiles():
        return config, None
    picked = load_config(profile=args.gpu, config_file=getattr(args, "config", None))
    why = f"made for {args.gpu}, picked by --gpu; --profile NAME plans another"
    return picked, why


def run(args: argparse.Namespace, config: AppConfig, backend: GpuBackend | None = None) -> int:
    config, picked = profile_for_gpu(args, config)
    catalog, rows, notes = planning_rows(config)
    for ref in args.add:
        try:
            rows.append(catalog_row(ref, catalog, rows))
        except (UnknownModel, ValueError) as exc:
            raise CommandError(f"--add {ref!r}: {exc}") from None
    target = find_target(args.gpu, config, backend)
    try:
        report = build_report(config, target, rows, notes)
    except PlanError as exc:
        raise CommandError(str(exc)) from None
    report["profile_picked"] = picked
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
