"""The Ray Serve application: the ingress in front of the GPU deployment, from our config.

Two ways to run it:
- ``python -m orchestrator serve --ray [--ray-address ADDRESS]``: joins the Ray cluster (or
  starts one on this machine), deploys, and serves until SIGINT or SIGTERM, then deletes the
  application (its replicas drain first);
- ``serve run deploy/ray/serve.yaml`` (or ``serve deploy``): Ray's own tools, through
  ``app_builder``, which reads the same TOML layers (``args: {profile, config}``).

Keys: every replica and the ingress read them as ``serve`` does (``VO_API_KEYS``,
``VO_API_KEY_FILE``, else the file in ``[state] dir``): on a cluster, give every node the same
ones (the serve config's ``runtime_env``), or each replica would make its own.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

import ray
from ray import serve
from ray.serve import Application

from orchestrator.config import AppConfig, load_config
from orchestrator.gpu.catalog import catalog_files, load_catalog
from orchestrator.scale.capacity import Capacity, replica_capacity
from orchestrator.scale.ingress import VoiceIngress
from orchestrator.scale.options import ingress_options, replica_options
from orchestrator.scale.replica import VoiceReplica

log = logging.getLogger(__name__)


def capacity_of(config: AppConfig) -> Capacity:
    return replica_capacity(config, load_catalog(catalog_files(config.gpu.catalog)))


def build(config: AppConfig, **replica_overrides: Any) -> Application:
    """The application; ``replica_overrides`` change the GPU deployment's options only (a
    redeploy that changes nothing else, e.g. ``num_replicas``, keeps the running replicas)."""
    capacity = capacity_of(config)
    log.info("sessions per replica: %d (%s)", capacity.sessions, capacity.reason)
    options = replica_options(config, capacity)
    if "num_replicas" in replica_overrides:
        options.pop("autoscaling_config", None)
    if "autoscaling_config" in replica_overrides:
        options.pop("num_replicas", None)
    replicas = serve.deployment(**{**options, **replica_overrides})(VoiceReplica)
    ingress = serve.deployment(**ingress_options(config))(VoiceIngress)
    return ingress.bind(config, replicas.bind(config))


def app_builder(args: dict[str, Any]) -> Application:
    """For a Serve config file: ``import_path: orchestrator.scale.app:app_builder``."""
    config_file = args.get("config")
    config = load_config(
        profile=args.get("profile"), config_file=Path(config_file) if config_file else None
    )
    return build(config)


def deploy(config: AppConfig, *, blocking: bool = False) -> None:
    """Start Serve's proxy on ``[scale] http_host:http_port`` and deploy (on a connected Ray)."""
    serve.start(http_options={"host": config.scale.http_host, "port": config.scale.http_port})
    serve.run(build(config), name=config.scale.app_name, route_prefix="/", blocking=blocking)


def run(config: AppConfig, address: str | None) -> None:
    """``serve --ray``: deploy, serve until a signal, then take the application down."""
    ray.init(address=address, include_dashboard=False)
    try:
        deploy(config)
        scale = config.scale
        print(
            f"voice-orchestrator on Ray Serve (profile {config.profile})\n"
            f"  voice API  http://{scale.http_host}:{scale.http_port}  (Bearer key;"
            f" {capacity_of(config).sessions} sessions per replica)",
            flush=True,
        )
        asyncio.run(_until_signal())
        log.info("stopping: replicas finish their sessions first")
        serve.delete(scale.app_name)
    finally:
        ray.shutdown()


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
