"""Numbers as an operator reads them; Jinja filters of the console's templates."""

from __future__ import annotations

from datetime import UTC, datetime

import jinja2

DASH = "—"


def size(value: int | float | None) -> str:
    """Bytes as GiB (from 1 GiB, two decimals) or MiB: binary units, as the planner and the
    ``plan`` command show memory, so the console and the CLI print the same figure."""
    if value is None:
        return DASH
    if abs(value) >= 2**30:
        return f"{value / 2**30:,.2f} GiB"
    return f"{value / 2**20:,.0f} MiB"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 60:
        return f"{minutes:.0f} min"
    hours, minutes = divmod(round(minutes), 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def seconds(value: float | None) -> str:
    """A short measured time (a load, a transition)."""
    return DASH if value is None else f"{value:.2f} s"


def when(at: float | None) -> str:
    if at is None:
        return DASH
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def usd(value: float | None) -> str:
    return DASH if value is None else f"${value:,.2f}"


def days(value: float | None) -> str:
    return "no limit" if value is None else f"{value:,.1f} days"


def install(env: jinja2.Environment) -> None:
    env.filters.update(size=size, duration=duration, seconds=seconds, when=when, usd=usd, days=days)
