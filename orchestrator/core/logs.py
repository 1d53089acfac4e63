"""Logging for every command: our lines at ``--log-level``, libraries' at ``--log-libraries``.

Libraries speak at WARNING unless asked (APScheduler alone wrote two INFO lines a second, burying
ours). ``--log-format json`` writes one JSON object per line for log shippers (Loki, Cloud
Logging, Datadog): ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, ``exc`` when there
is a traceback, and any ``extra={...}`` fields a call passed.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

LogFormat = Literal["text", "json"]
FORMATS: tuple[LogFormat, ...] = ("text", "json")
OURS = ("orchestrator", "services", "console", "__main__")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# The attributes every LogRecord has: anything else on a record came from ``extra``.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class _OurHandler(logging.StreamHandler[TextIO]):
    """The handler ``setup_logging`` adds: told apart from others so that it alone is replaced."""


def level_of(name: str, option: str) -> int:
    """``name`` (``info``, ``DEBUG``...) as a level, or ValueError naming the option."""
    level = logging.getLevelNamesMapping().get(name.strip().upper())
    if level is None:
        choices = "DEBUG, INFO, WARNING, ERROR, CRITICAL"
        raise ValueError(f"{option} {name!r}: expected one of {choices}")
    return level


def setup_logging(
    level: str = "INFO",
    *,
    libraries: str = "WARNING",
    fmt: LogFormat = "text",
    stream: TextIO | None = None,
) -> None:
    """Send every record to ``stream`` (stderr) as ``fmt``; ours from ``level``, the rest from
    ``libraries``. A second call replaces the handler the first added, and no other (pytest's
    capture handlers stay)."""
    ours = level_of(level, "--log-level")
    theirs = level_of(libraries, "--log-libraries")
    handler = _OurHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(theirs)
    for name in OURS:
        logging.getLogger(name).setLevel(ours)
