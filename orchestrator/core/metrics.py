"""Prometheus metrics, kept in a registry of our own so several servers can live in one process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LOAD_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.engine_state = Gauge(
            "vo_engine_state",
            "1 for the state each engine is in, 0 for the others",
            ["engine", "state"],
            registry=self.registry,
        )
        self.engine_memory = Gauge(
            "vo_engine_memory_bytes",
            "Engine memory by kind (ram|vram) and source (estimated|measured)",
            ["engine", "kind", "source"],
            registry=self.registry,
        )
        self.loads = Counter(
            "vo_engine_loads",
            "Engine loads by result",
            ["engine", "result"],
            registry=self.registry,
        )
        self.unloads = Counter(
            "vo_engine_unloads", "Engine unloads", ["engine"], registry=self.registry
        )
        self.load_seconds = Histogram(
            "vo_engine_load_seconds",
            "Time to load an engine",
            ["engine"],
            buckets=LOAD_BUCKETS,
            registry=self.registry,
        )
        self.turn_seconds = Histogram(
            "vo_turn_stage_seconds",
            "From the end of the user's speech to each stage of the reply",
            ["stage"],
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10),
            registry=self.registry,
        )
        self.switches = Counter(
            "vo_fallback_switches",
            "Sessions switching a role to another engine (failure, or recovery)",
            ["role", "source", "target"],
            registry=self.registry,
        )
        self.unload_seconds = Histogram(
            "vo_engine_unload_seconds",
            "Time to unload an engine",
            ["engine"],
            buckets=LOAD_BUCKETS,
            registry=self.registry,
        )

    def fallback_switch(self, role: str, source: str, target: str) -> None:
        self.switches.labels(role, source, target).inc()

    def turn_stage(self, stage: str, seconds: float) -> None:
        self.turn_seconds.labels(stage).observe(seconds)

    def load_finished(self, engine: str, seconds: float, *, ok: bool) -> None:
        self.loads.labels(engine, "ok" if ok else "error").inc()
        if ok:
            self.load_seconds.labels(engine).observe(seconds)

    def unload_finished(self, engine: str, seconds: float) -> None:
        self.unloads.labels(engine).inc()
        self.unload_seconds.labels(engine).observe(seconds)

    def set_engine_state(self, engine: str, state: str, states: list[str]) -> None:
        for candidate in states:
            self.engine_state.labels(engine, candidate).set(1 if candidate == state else 0)

    def set_engine_memory(self, engine: str, kind: str, source: str, value: int | None) -> None:
        if value is not None:
            self.engine_memory.labels(engine, kind, source).set(value)

    def render(self) -> bytes:
        return generate_latest(self.registry)
