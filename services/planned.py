"""An engine that is configured and planned but has no adapter yet.

The VRAM plan sizes and places every configured engine, including roles nothing serves yet
(``services.adapter_roles.PLANNED_ONLY``: the sizing seed's VLM and translation). The fleet
holds such an engine as a ``PlannedEngine``: always ``missing``, a load raises ``ModelMissing``
saying what is missing, and the rest of the profile serves as usual.
"""

from __future__ import annotations

from services.adapter_roles import PLANNED_ONLY
from services.base import (
    EngineHealth,
    EngineMemory,
    EngineSpec,
    EngineState,
    LoadReport,
    ModelArtifact,
    Runtime,
    UnloadReport,
)
from services.errors import ModelMissing


class PlannedEngine:
    """Stands for an engine of a role no adapter serves yet; it never loads."""

    runtime = Runtime.IN_PROCESS

    def __init__(self, spec: EngineSpec, adapter: str) -> None:
        self.spec = spec
        self.name = spec.name
        self.role = spec.role
        what = PLANNED_ONLY.get((adapter, spec.role), f"an engine of role {spec.role}")
        self._detail = f"planned only: no adapter serves role {spec.role} yet ({what})"
        self._hint = (
            "`python -m orchestrator plan` sizes and places it; to serve the rest of the profile"
            f" without it, set engines.{spec.name}.enabled = false"
        )

    @property
    def state(self) -> EngineState:
        return EngineState.MISSING

    @property
    def last_error(self) -> str | None:
        return self._detail

    def artifacts(self) -> list[ModelArtifact]:
        return []

    async def load(self) -> LoadReport:
        raise ModelMissing(self._detail, engine=self.name, hint=self._hint)

    async def unload(self) -> UnloadReport:
        return UnloadReport(0.0, 0, None)

    async def health(self) -> EngineHealth:
        return EngineHealth(EngineState.MISSING, self._detail, self._hint)

    def memory(self) -> EngineMemory:
        return EngineMemory(
            device=self.spec.device,
            estimated_vram_bytes=self.spec.estimated_vram_bytes,
            estimated_ram_bytes=self.spec.estimated_ram_bytes,
            measured_vram_bytes=None,
            measured_ram_bytes=None,
        )
