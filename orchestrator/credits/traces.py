"""Usage traces for the simulator: one session per CSV row or JSONL line, start and end times.

CSV has a header naming ``start`` and ``end`` (other columns are ignored); JSONL holds one object
``{"start": ..., "end": ...}`` per line. Times are epoch seconds or ISO-8601 (a time without an
offset is UTC). Every error names the file and line, because traces come from other tools'
exports and are edited by hand.
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.credits.simulator import Session
from services.errors import VoiceOrchestratorError

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")


class TraceError(VoiceOrchestratorError, ValueError):
    """A trace file that cannot be read, worded for the operator (file, line, what is wrong)."""

    code = "invalid_trace"
    status = 400


def parse_time(value: Any) -> float:
    """Epoch seconds from a number, a numeric string, or an ISO-8601 string."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{value!r} is not a time")
    if isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                raise ValueError(f"{value!r} is neither ISO-8601 nor epoch seconds") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return moment.timestamp()
    else:
        seconds = float(value)
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is not a finite time")
    return seconds


def _session(start: Any, end: Any, where: str) -> Session:
    times = []
    for name, value in (("start", start), ("end", end)):
        if value is None or value == "":
            raise TraceError(f"{where}: missing {name}")
        try:
            times.append(parse_time(value))
        except ValueError as exc:
            raise TraceError(f"{where}: {name}: {exc}") from None
    if times[1] < times[0]:
        raise TraceError(f"{where}: end {end!r} is before start {start!r}")
    return Session(times[0], times[1])


def read_trace(path: Path) -> list[Session]:
    """Sessions in file order; JSONL by suffix or by a first line that opens an object."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"cannot read trace {path}: {exc}") from None
    first = text.lstrip()[:1]
    is_jsonl = path.suffix.lower() in JSONL_SUFFIXES or first == "{"
    sessions = _read_jsonl(text, path) if is_jsonl else _read_csv(text, path)
    if not sessions:
        raise TraceError(f"{path}: no sessions in the trace")
    return sessions


def _read_csv(text: str, path: Path) -> list[Session]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    columns = [name.strip().lower() for name in header or []]
    if "start" not in columns or "end" not in columns:
        raise TraceError(f"{path} line 1: the CSV header must name 'start' and 'end' columns")
    start_at, end_at = columns.index("start"), columns.index("end")
    sessions = []
    for row in reader:
        where = f"{path} line {reader.line_num}"
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(start_at, end_at):
            raise TraceError(f"{where}: expected {len(columns)} columns, found {len(row)}")
        sessions.append(_session(row[start_at], row[end_at], where))
    return sessions


def _read_jsonl(text: str, path: Path) -> list[Session]:
    sessions = []
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{path} line {number}"
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TraceError(f"{where}: invalid JSON: {exc.msg}") from None
        if not isinstance(item, dict):
            raise TraceError(f'{where}: expected an object like {{"start": ..., "end": ...}}')
        sessions.append(_session(item.get("start"), item.get("end"), where))
    return sessions
