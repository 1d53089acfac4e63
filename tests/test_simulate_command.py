"""``python -m orchestrator simulate``: trace files in, a table or JSON out, clear errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.commands import CommandError, simulate
from orchestrator.config import AppConfig, load_config

CSV_TRACE = """start,end
2026-03-02T15:00:00Z,2026-03-02T15:30:00Z
2026-03-02T18:00:00,2026-03-02T18:30:00
2026-03-02T21:00:00+00:00,2026-03-02T21:30:00+00:00
"""
EPOCH = 1772463600  # 2026-03-02T15:00:00Z


@pytest.fixture(scope="module")
def t4() -> AppConfig:
    return load_config(profile="t4-16gb", environ={})


def args(trace: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    simulate.add_arguments(parser)
    return parser.parse_args(["--trace", str(trace), *extra])


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def report(
    capsys: pytest.CaptureFixture[str], config: AppConfig, trace: Path, *extra: str
) -> dict[str, Any]:
    assert simulate.run(args(trace, "--json", *extra), config) == 0
    body: dict[str, Any] = json.loads(capsys.readouterr().out)
    return body


def test_csv_trace_gives_hand_computed_figures(
    tmp_path: Path, t4: AppConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three half-hour lessons 3 h apart: 6.5 h span, the last 0.5 h of each gap powered off."""
    body = report(capsys, t4, write(tmp_path, "t.csv", CSV_TRACE))
    assert body["trace"] == {"sessions": 3, "start": EPOCH, "end": EPOCH + 6.5 * 3600}
    rows = {row["policy"]: row for row in body["policies"]}
    ladder = rows["ladder, host off in dormant"]
    assert ladder["always_on_hours"] == 6.5
    assert ladder["active_hours"] == 1.5
    assert ladder["billed_hours"] == 5.5
    assert ladder["cost_usd"] == pytest.approx(5.5 * 0.67, abs=0.01)
    assert ladder["credit_multiplier"] == pytest.approx(6.5 / 5.5, abs=1e-3)
    assert ladder["wakes"]["dormant"] == 3
    assert ladder["wait_s"] == {"p50": 93.0, "p99": 93.0, "max": 93.0}  # boot 90 + TTS 3
    assert rows["fixed timeout 15 min"]["billed_hours"] == 2.0
    assert rows["always on"]["billed_hours"] == 6.5
    assert rows["ladder, host stays on"]["wait_s"]["max"] == 3.0
    assert body["needs"] == ["asr", "tts"]


def test_jsonl_with_epoch_seconds_reads_the_same(
    tmp_path: Path, t4: AppConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        json.dumps({"start": EPOCH + i * 10800, "end": EPOCH + i * 10800 + 1800}) for i in range(3)
    ]
    from_jsonl = report(capsys, t4, write(tmp_path, "t.jsonl", "\n".join(lines) + "\n\n"))
    from_csv = report(capsys, t4, write(tmp_path, "t.csv", CSV_TRACE))
    assert from_jsonl["policies"] == from_csv["policies"]


def test_load_times_and_timeouts_from_the_command_line(
    tmp_path: Path, t4: AppConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = write(tmp_path, "t.csv", CSV_TRACE)
    body = report(capsys, t4, trace, "--load", "asr=7.5", "--boot-s", "60", "--timeouts", "45")
    rows = {row["policy"]: row for row in body["policies"]}
    assert rows["ladder, host off in dormant"]["wait_s"]["max"] == 67.5
    assert rows["fixed timeout 45 min"]["billed_hours"] == 3.0  # 6.5 - 2 x 1.75
    assert "fixed timeout 15 min" not in rows


def test_the_table_names_every_policy(
    tmp_path: Path, t4: AppConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    assert simulate.run(args(write(tmp_path, "t.csv", CSV_TRACE)), t4) == 0
    out = capsys.readouterr().out
    for policy in (
        "always on",
        "ladder, host off in dormant",
        "ladder, host stays on",
        "fixed timeout 15 min",
        "fixed timeout 30 min",
    ):
        assert policy in out
    assert "3 sessions" in out
    assert "$0.67/h" in out
    ladder_row = next(line for line in out.splitlines() if line.startswith("ladder, host off"))
    # billed h, cost $, + gw $ (no gateway in this policy: the same), credits x
    assert ladder_row.split()[5:9] == ["5.5", f"{5.5 * 0.67:.2f}", f"{5.5 * 0.67:.2f}", "1.18"]


@pytest.mark.parametrize(
    ("name", "text", "needles"),
    [
        ("a.csv", "start,end\n1,2\n3,soon\n", ["line 3", "end", "'soon'"]),
        ("b.csv", "start,end\n1,2\n\n9,4\n", ["line 4", "before start"]),
        ("c.csv", "start,end\n1,2\n5\n", ["line 3", "expected 2 columns"]),
        ("d.csv", "begin,finish\n1,2\n", ["line 1", "'start' and 'end'"]),
        ("e.csv", "start,end\n1,\n", ["line 2", "missing end"]),
        ("f.csv", "start,end\n", ["no sessions"]),
        ("g.jsonl", '{"start": 1, "end": 2}\n{"start": 3, "end": \n', ["line 2", "invalid JSON"]),
        ("h.jsonl", '{"start": 1, "end": 2}\n[1, 2]\n', ["line 2", "expected an object"]),
        ("i.jsonl", '{"start": 1}\n', ["line 1", "missing end"]),
        ("j.jsonl", '{"start": true, "end": 2}\n', ["line 1", "start", "not a time"]),
        ("k.jsonl", '{"start": 1, "end": "NaN"}\n', ["line 1", "not a finite time"]),
    ],
)
def test_malformed_traces_name_the_line_and_the_problem(
    tmp_path: Path, t4: AppConfig, name: str, text: str, needles: list[str]
) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(CommandError) as caught:
        simulate.run(args(path), t4)
    message = str(caught.value)
    assert str(path) in message
    for needle in needles:
        assert needle in message


def test_a_missing_trace_file_is_a_command_error(tmp_path: Path, t4: AppConfig) -> None:
    with pytest.raises(CommandError, match="cannot read trace"):
        simulate.run(args(tmp_path / "absent.csv"), t4)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--load", "asr"], "expected ROLE=SECONDS"),
        (["--load", "brain=3"], "expected ROLE=SECONDS"),
        (["--load", "tts=-1"], "zero or more"),
        (["--timeouts", "15,soon"], "expected minutes"),
        (["--timeouts", "0"], "positive"),
        (["--boot-s", "-5"], "--boot-s"),
    ],
)
def test_bad_options_are_command_errors(
    tmp_path: Path, t4: AppConfig, extra: list[str], needle: str
) -> None:
    trace = write(tmp_path, "t.csv", CSV_TRACE)
    with pytest.raises(CommandError, match=needle):
        simulate.run(args(trace, *extra), t4)


REQUIRED_KEYS = {
    "policy",
    "billed_hours",
    "credit_multiplier",
    "long_waits",
    "bridged_sessions",
    "first_answer_wait_s",
    "gateway_usd",
}


def test_every_policy_has_the_common_keys_and_the_hint_lead_moves_gateway_waits(
    tmp_path: Path, t4: AppConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = write(tmp_path, "t.csv", CSV_TRACE)
    body = report(capsys, t4, trace)
    for row in body["policies"]:
        assert set(row) >= REQUIRED_KEYS, row["policy"]
        assert set(row["first_answer_wait_s"]) == {"p50", "p99", "max"}
    rows = {row["policy"]: row for row in body["policies"]}
    assert rows["fixed timeout 30 min"]["bridged_sessions"] == 0
    assert rows["fixed timeout 30 min"]["long_waits"] == 3  # three cold boots of 93 s
    assert rows["gateway idle 30 min"]["first_answer_wait_s"]["max"] == 63.0  # 30 s hint
    later = report(capsys, t4, trace, "--hint-lead-s", "60")
    rows = {row["policy"]: row for row in later["policies"]}
    assert rows["gateway idle 30 min"]["first_answer_wait_s"]["max"] == 33.0
    assert rows["gateway idle 30 min + bridge"]["long_waits"] == 0


def test_a_negative_hint_lead_is_refused(tmp_path: Path, t4: AppConfig) -> None:
    with pytest.raises(CommandError, match="--hint-lead-s"):
        simulate.run(args(write(tmp_path, "t.csv", CSV_TRACE), "--hint-lead-s", "-1"), t4)
