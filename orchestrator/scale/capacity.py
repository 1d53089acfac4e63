"""How many sessions one replica (one GPU) takes at once: its ``max_ongoing_requests``.

Pure: the configuration and the model catalog in, a ``Capacity`` out. The planner budgets each
engine's memory for its catalog entry's ``sessions`` (a KV cache per session); a replica can
hold no more sessions than that budget:

    cascade   the fewest ``sessions`` among the cascade's engines whose memory grows per session
              (``per_session_mb`` above zero: the LLM's context, typically); engines without a
              per-session cache serve any number in turn, so one cascade session when none has
    duplex    the duplex engine's ``sessions`` (a PersonaPlex process holds one conversation),
              unless ``[duplex] policy`` is ``cascade-only``

A replica takes ``cascade + duplex`` sessions: the duplex router sends a session the duplex
engine cannot take to the cascade. ``[scale] sessions_per_replica`` overrides the sum.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.config import AppConfig, ConfigError, EngineConfig
from orchestrator.gpu.catalog import Catalog, CatalogEntry, planned_sessions


@dataclass(frozen=True)
class Capacity:
    cascade: int
    duplex: int
    reason: str  # one line for the operator: where the figure came from
    configured: int | None = None  # [scale] sessions_per_replica, when set

    @property
    def sessions(self) -> int:
        return self.configured if self.configured is not None else self.cascade + self.duplex


def replica_capacity(config: AppConfig, catalog: Catalog) -> Capacity:
    cascade, cascade_reason = _cascade(config, catalog)
    duplex, duplex_reason = _duplex(config, catalog)
    reason = f"{cascade_reason}; {duplex_reason}"
    configured = config.scale.sessions_per_replica
    if configured is not None:
        return Capacity(cascade, duplex, f"scale.sessions_per_replica = {configured}", configured)
    if cascade + duplex == 0:
        raise ConfigError(
            "scale: a replica would take no session (no cascade engines and no duplex engine);"
            " configure the engines or set scale.sessions_per_replica"
        )
    return Capacity(cascade, duplex, reason)


def _cascade(config: AppConfig, catalog: Catalog) -> tuple[int, str]:
    roles = config.sessions
    names = [name for name in (roles.asr, roles.llm, roles.tts) if name in config.engines]
    if not names:
        return 0, "no cascade engines"
    budgets = {
        name: planned_sessions(config.engines[name], catalog)
        for name in names
        if _grows_per_session(config.engines[name], catalog)
    }
    if not budgets:
        return 1, "cascade: 1 (no cascade engine keeps a cache per session)"
    name = min(budgets, key=lambda n: budgets[n])
    return budgets[name], f"cascade: {budgets[name]} (engine {name!r} is planned for that many)"


def _duplex(config: AppConfig, catalog: Catalog) -> tuple[int, str]:
    engine = config.engines.get(config.duplex.engine)
    if config.duplex.policy == "cascade-only" or engine is None:
        return 0, "duplex: 0"
    sessions = planned_sessions(engine, catalog)
    return sessions, f"duplex: {sessions} (engine {config.duplex.engine!r})"


def _grows_per_session(engine: EngineConfig, catalog: Catalog) -> bool:
    entry = _entry(engine, catalog)
    if entry is None:
        return False
    per_session = [entry.per_session_mb]
    per_session += [p.per_session_mb for p in entry.precisions.values() if p.per_session_mb]
    return any(mb > 0 for mb in per_session if mb is not None)


def _entry(engine: EngineConfig, catalog: Catalog) -> CatalogEntry | None:
    key = (engine.catalog or "").partition(":")[0]
    if key in catalog.models:
        return catalog.models[key]
    found = catalog.find(engine.adapter, engine.model)
    return None if found is None else found[1]
