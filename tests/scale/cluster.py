"""A local Ray cluster on the CPU running our Serve application (the Ray tests and
``bench/scale_out.py`` share it): start once, redeploy with other replica options, ask the
replica actors where each session is.

Ray's workers import ``orchestrator`` from this checkout (``PYTHONPATH``), get the API key
(``VO_API_KEYS``) and the hub switched off, through the environment they inherit from here.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray
from ray import serve
from ray.serve.context import _get_global_client
from ray.serve.schema import ServeDeploySchema

from orchestrator.config import AppConfig, load_config
from orchestrator.scale.options import REPLICA

ROOT = Path(__file__).resolve().parents[2]


def scale_toml(http_port: int, **keys: Any) -> str:
    """A ``[scale]`` table for the CPU: replicas on loopback, no GPU, a fast routing view."""
    values = {
        "http_host": "127.0.0.1",
        "http_port": http_port,
        "replica_host": "127.0.0.1",
        "gpus_per_replica": 0,
        "cpus_per_replica": 0,
        "routing_stats_period_s": 0.5,
        "waking_interval_s": 1.0,
        **keys,
    }
    lines = [f"{k} = {_toml(v)}" for k, v in values.items()]
    return "\n[scale]\n" + "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


class LocalCluster:
    def __init__(self, config_file: Path, api_key: str) -> None:
        self.config_file = config_file
        self.config: AppConfig = load_config(config_file=config_file, environ={})
        self.api_key = api_key
        self.url = f"http://127.0.0.1:{self.config.scale.http_port}"
        self.ws_url = f"ws://127.0.0.1:{self.config.scale.http_port}"

    @contextmanager
    def running(self) -> Iterator[LocalCluster]:
        saved = {name: os.environ.get(name) for name in ("PYTHONPATH", "VO_API_KEYS")}
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), saved["PYTHONPATH"]) if p)
        os.environ["VO_API_KEYS"] = self.api_key
        os.environ["HF_HUB_OFFLINE"] = "1"
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": self.config.scale.http_port})
            yield self
        finally:
            serve.shutdown()
            ray.shutdown()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def deploy(self, **replica_overrides: Any) -> None:
        """Deploy as ``serve deploy deploy/ray/serve.yaml`` does: the application built by
        ``app_builder`` from the config file, the GPU deployment's options overridden. Ray
        updates options in place (no replica restarts) only for a config deploy: ``serve.run``
        from Python makes every deploy a new version. Returns when it runs."""
        name = self.config.scale.app_name
        schema = ServeDeploySchema(
            applications=[
                {
                    "name": name,
                    "route_prefix": "/",
                    "import_path": "orchestrator.scale.app:app_builder",
                    "args": {"config": str(self.config_file)},
                    "deployments": [{"name": REPLICA, **replica_overrides}],
                }
            ]
        )
        _get_global_client().deploy_apps(schema)
        deadline = time.monotonic() + 300
        while (app := serve.status().applications.get(name)) is None or app.status != "RUNNING":
            assert app is None or app.status != "DEPLOY_FAILED", app.message
            assert time.monotonic() < deadline, app
            time.sleep(0.2)

    @contextmanager
    def deploying(self, **replica_overrides: Any) -> Iterator[threading.Thread]:
        """Redeploy in a thread (it returns only once every replica taken away has drained)."""
        failures: list[BaseException] = []

        def target() -> None:
            try:
                self.deploy(**replica_overrides)
            except BaseException as exc:
                failures.append(exc)

        thread = threading.Thread(target=target, name="redeploy", daemon=True)
        thread.start()
        yield thread
        thread.join(timeout=300)
        assert not thread.is_alive(), "the redeploy did not finish"
        assert not failures, failures

    def replicas(self) -> list[dict[str, Any]]:
        """The GPU deployment's replicas as Serve's controller lists them (id, state, actor)."""
        details = _get_global_client().get_serve_details()
        app = details.get("applications", {}).get(self.config.scale.app_name)
        if app is None:
            return []
        deployment = app["deployments"].get(REPLICA)
        return [] if deployment is None else list(deployment["replicas"])

    def in_state(self, state: str) -> list[str]:
        return [r["replica_id"] for r in self.replicas() if r["state"] == state]

    def stats(self) -> dict[str, dict[str, Any]]:
        """Each live replica's own report (``VoiceReplica.record_routing_stats``), by id."""
        found = {}
        for replica in self.replicas():
            if replica["state"] not in ("RUNNING", "STOPPING"):
                continue
            actor = ray.get_actor(replica["actor_name"], namespace="serve")
            found[replica["replica_id"]] = ray.get(actor.record_routing_stats.remote())
        return found

    def where(self) -> dict[str, str]:
        """session id -> the replica that holds it."""
        return {s: rid for rid, st in self.stats().items() for s in st["sessions"]}


async def until(check: Callable[[], Any], timeout: float = 120, what: str = "") -> Any:
    """Poll a condition of the cluster (the controller has no event to wait on) until it
    holds; the answer it gave. Fails after ``timeout`` naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        found = await asyncio.to_thread(check)
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.2)
