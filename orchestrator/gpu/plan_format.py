"""The plan report (``plan_report.build_report``) as the table ``python -m orchestrator plan``
prints: one line per engine, then the VRAM of each GPU, the modes when not all fit, the cost.

On one GPU an engine's place is ``gpu``, ``cpu`` or ``off``; on several, ``cuda:N`` names the
GPU. Memory is GiB throughout.
"""

from __future__ import annotations

from typing import Any

from orchestrator.gpu.placement import gib


def format_report(report: dict[str, Any]) -> str:
    gpu, cost = report["gpu"], report["cost"]
    several = len(gpu["devices"]) > 1
    lines = [
        _headline(report),
        "",
        f"{'engine':<20} {'role':<12} {'prio':>4}  {'where':<6} {'VRAM':>10}  estimate",
    ]
    for engine in report["engines"]:
        size = gib(engine["vram_bytes"]) if engine["runs_on"] != "cpu" else "-"
        origin = f"{engine['estimate_source']} {engine['estimate_detail']}"
        if not engine["configured"]:
            origin += " (--add)"
        where = (
            engine["device"] if several and engine["placement"] == "gpu" else engine["placement"]
        )
        lines.append(
            f"{engine['name']:<20} {engine['role']:<12} {engine['priority']:>4}"
            f"  {where:<6} {size:>10}  {origin}"
        )
    lines.append("")
    if gpu["source"] != "none":
        lines += _vram_lines(report) if several else [_vram_line(report)]
        lines += _format_modes(report)
    per_month = ", ".join(f"{label} ${usd:,.2f}" for label, usd in cost["per_month_usd"].items())
    lines.append(f"cost     ${cost['usd_per_hour']:.2f}/h ({cost['source']})")
    lines.append(f"         per month: {per_month}")
    lines += [f"note     {note}" for note in report["notes"]]
    return "\n".join(lines)


def _headline(report: dict[str, Any]) -> str:
    gpu = report["gpu"]
    count = len(gpu["devices"])
    if gpu["source"] == "none":
        where = "no GPU (CPU placements only)"
    elif count > 1:
        where = f"{gpu['name']} ({gpu['source']}, {count} GPUs, {gib(gpu['total_bytes'])} in all)"
    else:
        where = f"{gpu['name']} ({gpu['source']}, {gib(gpu['total_bytes'])})"
    picked = f" ({report['profile_picked']})" if report.get("profile_picked") else ""
    each = " per GPU" if count > 1 else ""
    return (
        f"plan     profile {report['profile']}{picked} on {where},"
        f" reserve {gib(gpu['reserve_bytes'])}{each}"
    )


def _vram_line(report: dict[str, Any]) -> str:
    gpu, vram = report["gpu"], report["vram"]
    return (
        f"VRAM     used {gib(vram['used_bytes'])} of {gib(gpu['total_bytes'])},"
        f" {gib(vram['left_bytes'])} left ({gib(gpu['reserve_bytes'])} of it the reserve)"
    )


def _vram_lines(report: dict[str, Any]) -> list[str]:
    gpu, vram = report["gpu"], report["vram"]
    lines = []
    for number, device in enumerate(gpu["devices"]):
        label = "VRAM" if number == 0 else ""
        held = ", ".join(device["engines"]) or "nothing"
        lines.append(
            f"{label:<8} {device['device']} {device['type'] or device['name']}:"
            f" used {gib(device['used_bytes'])} of {gib(device['total_bytes'])},"
            f" {gib(device['left_bytes'])} left ({gib(gpu['reserve_bytes'])} of it the reserve):"
            f" {held}"
        )
    lines.append(
        f"{'':<8} in all: used {gib(vram['used_bytes'])} of {gib(gpu['total_bytes'])},"
        f" {gib(vram['left_bytes'])} left"
    )
    return lines


def _format_modes(report: dict[str, Any]) -> list[str]:
    several = len(report["gpu"]["devices"]) > 1
    if report["all_fit"]:
        where = "the GPUs" if several else "the GPU"
        return [f"modes    everything fits on {where} at once"]
    lines = ["modes    not everything fits at once; these sets do, best first (value: priority+1)"]
    for number, mode in enumerate(report["modes"], start=1):
        if several:
            line = f"  {number}. " + "; ".join(
                f"{d['device']}: {', '.join(d['engines']) or '-'} ({gib(d['used_bytes'])})"
                for d in mode["devices"]
            )
        else:
            line = f"  {number}. gpu: {', '.join(mode['gpu']) or '-'} ({gib(mode['used_bytes'])})"
        if mode["cpu"]:
            line += f"; cpu: {', '.join(mode['cpu'])}"
        if mode["off"]:
            line += f"; off: {', '.join(mode['off'])}"
        lines.append(f"{line}; value {mode['value']}")
    return lines
