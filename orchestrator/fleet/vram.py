"""The fleet's side of VRAM admission (``orchestrator.gpu.admission``).

Before a load the admission needs the fleet as it stands (what is loaded, loading, held,
pinned, and on which device), a way to evict an idle engine, and afterwards the VRAM the
load measured. ``VramAdmission`` gives it those from the fleet's records; the fleet itself
only asks ``admit`` before a load and moves the engine to the CPU when told to.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from orchestrator.fleet.records import EngineRecord
from orchestrator.gpu.admission import Admission
from orchestrator.gpu.admission import EngineState as AdmissionState
from orchestrator.gpu.planner import Action
from services.base import LoadReport


class VramAdmission:
    def __init__(
        self,
        admission: Admission,
        records: Mapping[str, EngineRecord],
        evict: Callable[[str], Awaitable[bool]],
    ) -> None:
        self.admission = admission
        self._records = records
        self._evict = evict  # unload an idle engine; False when it was skipped (leased, pinned)

    async def admit(self, name: str) -> str | None:
        """Admit a load of ``name``, evicting what the planner says (``AdmissionRefused`` when
        there is no room). Returns why when the planner put this GPU engine on the CPU instead."""
        decision = await self.admission.admit(name, self.view, self._evict)
        if decision.action is Action.CPU and self._records[name].config.device != "cpu":
            return decision.message
        return None

    def loaded(self, record: EngineRecord, report: LoadReport) -> None:
        """Keep the VRAM a real load measured, so the next plan uses it instead of the estimate."""
        self.admission.record(record.effective_config(), report.vram_delta_bytes)

    def view(self) -> dict[str, AdmissionState]:
        return {
            name: AdmissionState(
                config=rec.effective_config(),
                loaded=rec.loaded,
                loading=rec.loading is not None and not rec.loading.done(),
                held=rec.held,
                pinned=rec.pinned,
            )
            for name, rec in self._records.items()
        }

    async def budget(self) -> dict[str, Any] | None:
        """The VRAM budget of the first GPU for the health summary (None without a GPU)."""
        return await self.admission.budget(self.view())
