"""The Grafana dashboard (``deploy/grafana/voice-orchestrator.json``) names only metrics that a
running server exposes: every metric its PromQL uses is looked up in a real ``/metrics`` page."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.api.app import create_api_app
from orchestrator.app.runtime import Runtime

Client = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
DASHBOARD = Path(__file__).parent.parent / "deploy" / "grafana" / "voice-orchestrator.json"

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")  # label matchers (after strings are gone)
_RANGES = re.compile(r"\[[^\[\]]*\]")  # range vectors and subqueries
_VARIABLES = re.compile(r"\$\{[^}]*\}|\$\w+")  # Grafana's $__rate_interval, ${instance}
_LABEL_LISTS = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_NUMBERS = re.compile(r"(?<![\w:])\d[\w.]*")  # 0.95, 86400, durations (offset 1h)
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "inf", "nan", "atan2"}
_LABEL_VALUES = re.compile(r"label_values\(\s*([^,()]+?)\s*(?:,|\))")
# the names a family of each type is exposed under (the text format's suffixes)
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "untyped": ("",),
    "info": ("_info",),
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: what is left once strings, label
    matchers, ranges, Grafana variables, label lists, numbers and function names are out."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _VARIABLES.sub(" ", text)
    text = _LABEL_LISTS.sub(" ", text)
    text = _NUMBERS.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        word = match.group()
        called = text[match.end() :].lstrip().startswith("(")
        if not called and word.lower() not in _KEYWORDS:
            names.add(word)
    return names


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target, nested rows included, and every query variable."""

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            found = _LABEL_VALUES.search(text)
            yield f"${variable['name']}", found.group(1) if found else text


def exposed_names(page: str) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(page):
        names |= {family.name + suffix for suffix in _SUFFIXES[family.type]}
        names |= {s.name for s in family.samples}
    return names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'histogram_quantile(0.95, sum by (le, route) (rate(vo_a_bucket{x=~"5..",'
            'y="$y"}[$__rate_interval])))',
            {"vo_a_bucket"},
        ),
        (
            "sum(rate(vo_b_total[5m])) / ignoring(code) group_left(route) vo_c",
            {"vo_b_total", "vo_c"},
        ),
        (
            'max without (pod) (vo_d{a="sum(x)"}) > bool 0 and on(i) vo_e offset 1h',
            {"vo_d", "vo_e"},
        ),
        ("min(vo_f) / 86400 + count(up) by (job)", {"vo_f", "up"}),
        ("vo_g", {"vo_g"}),
    ],
)
def test_metric_names_finds_every_selector(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"


async def test_every_metric_the_dashboard_names_is_exposed(
    runtime: Runtime, aiohttp_client: Client, auth: dict[str, str]
) -> None:
    client = await aiohttp_client(create_api_app(runtime))
    await client.get("/health", headers=auth)  # some traffic, so request series exist
    page = await (await client.get("/metrics", headers=auth)).text()
    exposed = exposed_names(page)

    wanted: dict[str, set[str]] = {}
    for where, expr in dashboard_queries(json.loads(DASHBOARD.read_text())):
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        for name in names:
            wanted.setdefault(name, set()).add(where)
    missing = {name: sorted(places) for name, places in wanted.items() if name not in exposed}
    assert not missing, f"the dashboard names metrics /metrics does not have: {missing}"
    # the panels the issue asks for are there (a dashboard that lost them would still pass)
    for name in (
        "vo_hibernation_state",
        "vo_hibernation_time_in_state_seconds",
        "vo_hibernation_wake_seconds_count",
        "vo_hibernation_wake_seconds_bucket",
        "vo_http_requests_total",
        "vo_http_request_duration_seconds_bucket",
        "vo_sessions_open",
        "vo_time_to_first_audio_seconds_bucket",
        "vo_turn_stage_seconds_bucket",
        "vo_engine_state",
        "vo_engine_memory_bytes",
        "vo_host_billed_seconds",
        "vo_credits_remaining_usd",
        "vo_credits_runway_seconds",
    ):
        assert name in wanted, name
