"""The GPU deployment's replica: our whole runtime and its voice API, one per GPU.

Each replica runs what ``serve`` runs on one host (``Runtime`` and the aiohttp voice API of
``orchestrator.api``, the same routes), on a port of its own node; the ingress relays each
client to it. Ray sees one ongoing request per session: ``place`` gives the ingress a ticket
and lasts until the session that used it ends (``tickets.py``). So Ray's cap
(``max_ongoing_requests``), its autoscaler and its drain all count our sessions, and a replica
that is stopped finishes its open sessions first (Ray routes nothing new to it meanwhile).

What differs from a single host, and why:
- the state (SQLite store, ledger, pidfiles) is the replica's own, under
  ``<state.dir>/replicas/<replica id>``: two replicas on one node must not share a ladder;
- ``[host_power]`` is off: Ray's autoscaler owns the machines; an idle replica's models still
  walk the hibernation ladder (parked, unloaded), so a replica kept at ``min_replicas`` costs
  the GPU time only;
- no console: Ray's dashboard shows the replicas, ``/health`` of each shows its engines.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import ray
from aiohttp import web
from ray import serve

from orchestrator.api.app import create_api_app
from orchestrator.app.runtime import Runtime
from orchestrator.config import AppConfig, HostPowerConfig
from orchestrator.config.secrets import load_secrets
from orchestrator.core.sites import start_site
from orchestrator.scale.tickets import TicketBook, ticket_middleware
from orchestrator.server import runner_options
from services.base import EngineState

log = logging.getLogger(__name__)


def replica_config(config: AppConfig, replica_id: str) -> AppConfig:
    """The replica's own configuration: its own state, its own port, no host power."""
    state = config.state.model_copy(update={"dir": config.state.dir / "replicas" / replica_id})
    server = config.server.model_copy(update={"api_host": config.scale.replica_host})
    return config.model_copy(
        update={"state": state, "server": server, "host_power": HostPowerConfig()}
    )


class VoiceReplica:
    """Built by Ray Serve (``app.py`` wraps it in ``serve.deployment``); one per GPU."""

    async def __init__(self, config: AppConfig) -> None:  # type: ignore[misc]  # Serve awaits it
        self.replica_id = serve.get_replica_context().replica_id.unique_id
        secrets = load_secrets(config.state.dir)  # the keys every replica shares
        self.config = replica_config(config, self.replica_id)
        self.config.state.dir.mkdir(parents=True, exist_ok=True)
        self.claim_timeout_s = config.scale.claim_timeout_s
        self.book = TicketBook()
        self.runtime = Runtime.create(self.config, secrets)
        app = create_api_app(self.runtime)
        app.middlewares.insert(0, ticket_middleware(self.book))
        self.runner = web.AppRunner(app, **runner_options(self.config.server))
        await self.runner.setup()
        host = self.config.server.api_host
        await start_site(self.runner, host, 0, "scale.replica_host")
        port = _bound_port(self.runner)
        address = _node_address() if host in ("0.0.0.0", "::", "") else host
        self.url = f"http://{address}:{port}"
        if self.runtime.supervisor is not None:
            await self.runtime.supervisor.recover_orphans()
        self.runtime.start()
        log.info("replica %s serves the voice API on %s", self.replica_id, self.url)

    async def place(self) -> AsyncIterator[dict[str, str]]:
        """A place for one session or request: where to send it, then held while it runs."""
        ticket = self.book.issue()
        yield {"url": self.url, "replica": self.replica_id, "ticket": ticket}
        if not await self.book.held(ticket, self.claim_timeout_s):
            log.warning("a place on replica %s was never used: freed", self.replica_id)

    async def record_routing_stats(self) -> dict[str, Any]:
        """What the router ranks replicas by (``warmth.py``), and which sessions are here (an
        operator, and the tests, ask the replica actor which session is where)."""
        loaded = {s.name for s in await self.runtime.fleet.statuses() if s.state == _LOADED}
        wanted = _session_engines(self.config)
        return {
            "replica": self.replica_id,
            "state": self.runtime.hibernation_state,
            "cold": sorted(wanted - loaded),
            "places": len(self.book),
            "sessions": sorted(self.runtime.sessions),
        }

    async def __del__(self) -> None:
        """Ray calls this after the drain: every session has ended (or the drain ran out)."""
        self.runtime.shutting_down = True
        await self.runner.cleanup()
        await self.runtime.stop()
        log.info("replica %s stopped", self.replica_id)


_LOADED = EngineState.LOADED.value


def _session_engines(config: AppConfig) -> set[str]:
    roles = config.sessions
    return {n for n in (roles.vad, roles.asr, roles.llm, roles.tts) if n in config.engines}


def _node_address() -> str:
    return str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError(
        f"the replica's voice API is not listening on a TCP port: {runner.addresses}"
    )
