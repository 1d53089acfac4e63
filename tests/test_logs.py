"""Logging: our lines at ``--log-level``, libraries' (APScheduler...) at WARNING unless asked,
and ``--log-format json`` as one parseable object per line."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from orchestrator.core.logs import OURS, _OurHandler, setup_logging
from tests.test_cli import assert_clean_error, run_cli


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in (*OURS, "")}
    yield
    for handler in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


@pytest.mark.usefixtures("restore_logging")
def test_libraries_speak_at_warning_unless_asked() -> None:
    stream = io.StringIO()
    setup_logging("INFO", stream=stream)
    logging.getLogger("apscheduler.executors.default").info('Job "tick" executed successfully')
    logging.getLogger("apscheduler.scheduler").warning("Run time of job was missed")
    logging.getLogger("orchestrator.hibernation.writer").info("ACTIVE -> WARM")
    # "2026-12-01 05:30:00,123 WARNING apscheduler.scheduler: ...": what follows the level
    assert [re.sub(r"^\S+ \S+ \S+\s+", "", line) for line in lines(stream)] == [
        "apscheduler.scheduler: Run time of job was missed",
        "orchestrator.hibernation.writer: ACTIVE -> WARM",
    ]
    asked = io.StringIO()
    setup_logging("INFO", libraries="info", stream=asked)  # a second call replaces the first
    logging.getLogger("apscheduler.executors.default").info("executed")
    assert len(lines(asked)) == 1 and lines(stream)[2:] == []


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_carry_the_fields_a_shipper_needs() -> None:
    stream = io.StringIO()
    setup_logging("DEBUG", fmt="json", stream=stream)
    log = logging.getLogger("services.ollama_llm")
    log.info("loaded %s in %.1f s", "mistral", 2.5, extra={"engine": "llm", "seconds": 2.5})
    try:
        raise RuntimeError("engine died")
    except RuntimeError:
        log.exception("reply failed")
    first, second = (json.loads(line) for line in lines(stream))
    assert first["level"] == "INFO" and first["logger"] == "services.ollama_llm"
    assert first["message"] == "loaded mistral in 2.5 s"
    assert (first["engine"], first["seconds"]) == ("llm", 2.5)
    assert first["ts"].endswith("+00:00")
    assert second["level"] == "ERROR" and "RuntimeError: engine died" in second["exc"]


def test_a_bad_level_or_format_is_one_clear_line() -> None:
    assert_clean_error(run_cli("status", "--log-level", "loud"), "--log-level 'loud'")
    assert_clean_error(run_cli("status", "--log-format", "xml"), "invalid choice: 'xml'")
    assert_clean_error(run_cli("status", env={"VO_LOG_FORMAT": "xml"}), "VO_LOG_FORMAT 'xml'")
