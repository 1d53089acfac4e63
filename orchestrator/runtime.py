"""Everything one running server shares between its voice API and its console."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from orchestrator.config import AppConfig
from orchestrator.fleet import Fleet
from orchestrator.metrics import Metrics
from orchestrator.secrets import Secrets


@dataclass
class Runtime:
    config: AppConfig
    secrets: Secrets
    metrics: Metrics
    fleet: Fleet
    started_at: float = field(default_factory=time.monotonic)
    shutting_down: bool = False
    # Until the hibernation ladder lands, the stack is always fully awake.
    hibernation_state: str = "active"

    @classmethod
    def create(cls, config: AppConfig, secrets: Secrets) -> Runtime:
        metrics = Metrics()
        return cls(config=config, secrets=secrets, metrics=metrics, fleet=Fleet(config, metrics))

    def uptime(self) -> float:
        return time.monotonic() - self.started_at
