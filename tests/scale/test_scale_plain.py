"""The scale-out's plain parts, without Ray: capacity from the planner, the options Ray Serve is
given, the warm-first ranking, the places (tickets), the ``[scale]`` config and the start path
that must never import Ray."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from orchestrator.config import AppConfig, ConfigError, load_config
from orchestrator.gpu.catalog import catalog_files, load_catalog
from orchestrator.scale.capacity import replica_capacity
from orchestrator.scale.options import HEAD_RESOURCE, ROUTER_CLASS, ingress_options, replica_options
from orchestrator.scale.tickets import TICKET_HEADER, TicketBook, ticket_middleware
from orchestrator.scale.warmth import is_warm, warm_first

ROOT = Path(__file__).resolve().parents[2]

GPU_HOST = """
profile = "cpu"
[engines.asr]
role = "asr"
adapter = "faster-whisper"
model = "small"
[engines.llm]
role = "llm"
adapter = "ollama"
model = "mistral:7b"
catalog = "mistral-7b"
[engines.tts]
role = "tts"
adapter = "piper"
model = "en_US-lessac-medium"
[engines.vad]
enabled = false
[engines.duplex]
role = "duplex"
adapter = "personaplex"
model = "nvidia/personaplex-7b-v1"
catalog = "personaplex-7b"
"""


def config(tmp_path: Path, text: str) -> AppConfig:
    path = tmp_path / "c.toml"
    path.write_text(text + f'\n[state]\ndir = "{tmp_path / "state"}"\n')
    return load_config(config_file=path, environ={})


def capacity(cfg: AppConfig) -> Any:
    return replica_capacity(cfg, load_catalog(catalog_files(cfg.gpu.catalog)))


def test_a_replica_takes_the_llms_planned_sessions_plus_the_duplex_engines(
    tmp_path: Path,
) -> None:
    found = capacity(config(tmp_path, GPU_HOST))
    catalog = load_catalog(catalog_files(None))
    assert found.cascade == catalog.models["mistral-7b"].sessions  # the LLM's KV caches
    assert found.duplex == catalog.models["personaplex-7b"].sessions  # one conversation
    assert found.sessions == found.cascade + found.duplex
    assert "'llm'" in found.reason


def test_cascade_only_leaves_the_duplex_engine_out_and_the_config_overrides(
    tmp_path: Path,
) -> None:
    cascade_only = capacity(config(tmp_path, GPU_HOST + '\n[duplex]\npolicy = "cascade-only"\n'))
    assert cascade_only.duplex == 0
    assert cascade_only.sessions == cascade_only.cascade
    fixed = capacity(config(tmp_path, GPU_HOST + "\n[scale]\nsessions_per_replica = 7\n"))
    assert fixed.sessions == 7
    assert fixed.reason == "scale.sessions_per_replica = 7"


def test_options_carry_capacity_queue_autoscaling_and_the_drain(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        GPU_HOST + "\n[sessions]\nmax_minutes = 90\n[scale]\nmin_replicas = 0\nmax_replicas = 6\n"
        "max_queued_sessions = 3\ndownscale_delay_s = 900\n",
    )
    found = capacity(cfg)
    options = replica_options(cfg, found)
    assert options["max_ongoing_requests"] == found.sessions
    assert options["max_queued_requests"] == 3
    assert options["ray_actor_options"]["num_gpus"] == 1.0
    assert options["graceful_shutdown_timeout_s"] >= 90 * 60  # a lesson is never cut
    assert options["request_router_config"]["request_router_class"] == ROUTER_CLASS
    auto = options["autoscaling_config"]
    assert (auto["min_replicas"], auto["max_replicas"], auto["downscale_delay_s"]) == (0, 6, 900)
    assert 1 <= auto["target_ongoing_requests"] <= found.sessions
    assert "num_replicas" not in options
    ingress = ingress_options(cfg)
    assert ingress["ray_actor_options"]["resources"] == {HEAD_RESOURCE: 0.001}
    assert ingress["graceful_shutdown_timeout_s"] == options["graceful_shutdown_timeout_s"]


def test_a_fixed_count_replaces_autoscaling(tmp_path: Path) -> None:
    cfg = config(tmp_path, GPU_HOST + "\n[scale]\nreplicas = 3\n")
    options = replica_options(cfg, capacity(cfg))
    assert options["num_replicas"] == 3
    assert "autoscaling_config" not in options


@pytest.mark.parametrize(
    ("table", "key"),
    [
        (
            "[sessions]\nmax_minutes = 90\n[scale]\ngraceful_shutdown_timeout_s = 600\n",
            "scale.graceful_shutdown_timeout_s",
        ),
        ("[scale]\nmin_replicas = 5\nmax_replicas = 2\n", "min_replicas (5) is above"),
        ("[scale]\nmax_queued_sessions = 0\n", "max_queued_sessions"),
        ("[scale]\nsessions_per_replica = 0\n", "scale.sessions_per_replica"),
    ],
)
def test_bad_scale_settings_name_their_key(tmp_path: Path, table: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace("(", r"\(").replace(")", r"\)")):
        config(tmp_path, GPU_HOST + "\n" + table)


def test_warm_replicas_rank_before_cold_and_unreported_ones() -> None:
    stats = {
        "a": {"state": "active", "cold": []},
        "b": {"state": "active", "cold": ["llm"]},
        "c": {},  # just started: no report yet
        "d": {"state": "warm", "cold": []},
        "e": {"state": "cool", "cold": []},  # models parked
    }
    assert warm_first(list(stats), stats.__getitem__) == [["a", "d"], ["b", "c", "e"]]
    assert warm_first(["b"], stats.__getitem__) == [["b"]]
    assert not is_warm({"state": "active"})


async def test_a_place_is_held_while_its_request_runs_and_freed_after() -> None:
    book = TicketBook()
    entered, leave = asyncio.Event(), asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        entered.set()
        await leave.wait()
        return web.Response(text="ok")

    app = web.Application(middlewares=[ticket_middleware(book)])
    app.router.add_get("/slow", slow)
    async with TestClient(TestServer(app)) as client:
        ticket = book.issue()
        held = asyncio.create_task(book.held(ticket, claim_timeout_s=60))
        request = asyncio.create_task(client.get("/slow", headers={TICKET_HEADER: ticket}))
        await entered.wait()
        assert not held.done() and len(book) == 1
        leave.set()
        assert (await request).status == 200
        assert await held is True
        assert len(book) == 0


async def test_a_place_never_used_is_freed_after_the_claim_timeout() -> None:
    book = TicketBook()
    ticket = book.issue()
    assert await book.held(ticket, claim_timeout_s=0.01) is False
    assert len(book) == 0
    assert book.claim(ticket) is False  # too late: the request is served without a place


def test_the_product_start_path_never_imports_ray() -> None:
    code = (
        "import sys, orchestrator.cli, orchestrator.server, orchestrator.commands.serve;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'fastapi')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_serve_ray_without_ray_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestrator.cli import main

    ray_side = ("ray", "orchestrator.scale.app", "orchestrator.scale.replica")
    ray_side += ("orchestrator.scale.ingress", "orchestrator.scale.router")
    for name in [m for m in sys.modules if m.split(".")[0] == "ray" or m in ray_side]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    path = tmp_path / "c.toml"
    path.write_text(f'profile = "cpu"\n[state]\ndir = "{tmp_path / "state"}"\n')
    assert main(["serve", "--ray", "--config", str(path)]) == 2
    assert "pip install '.[ray]'" in capsys.readouterr().err
