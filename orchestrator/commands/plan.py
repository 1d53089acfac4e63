"""``plan``: which engines of the profile fit on which GPU, the modes when not all do, the cost.

For a named GPU type (``--gpu t4-16gb``), a host of several (``--gpu 2x-t4-16gb``,
``--gpu t4-16gb+gtx1660-6gb``: cuda:0 first) or the GPUs NVML finds (none: CPU placements only).
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
from orchestrator.gpu.gpu_types import GPU_TYPES, parse_gpu_set
from orchestrator.gpu.plan_format import format_report
from orchestrator.gpu.plan_report import build_report, catalog_row, find_target, planning_rows
from orchestrator.gpu.planner import PlanError
from orchestrator.gpu.telemetry import GpuBackend

NAME = "plan"
HELP = "which engines fit on the GPU, the modes when not all do, and the cost"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gpu",
        type=gpu_set_name,
        metavar="TYPE[+TYPE...]",
        help="plan for this GPU type, or several on one host: 2x-t4-16gb, t4-16gb+gtx1660-6gb"
        f" (cuda:0 first); types: {', '.join(sorted(GPU_TYPES))}",
    )
    parser.add_argument(
        "--add",
        action="append",
        default=[],
        metavar="MODEL[:PRECISION][@PRIORITY]",
        help="also plan this catalog model (repeatable), e.g. personaplex-7b@90",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def gpu_set_name(text: str) -> str:
    """``--gpu``'s value, checked, in its canonical spelling; an error names the known types."""
    try:
        return parse_gpu_set(text).name
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
