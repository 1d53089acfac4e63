"""The fleet's side of VRAM admission (``orchestrator.gpu.admission``).

Before a load the admission needs the fleet as it stands (what is loaded, loading, held,
pinned, and on which device), a way to evict an idle engine, and afterwards the VRAM the
load measured. ``VramAdmission`` gives it those from the fleet's records; the fleet itself
only asks ``admit`` before a load and rebuilds the engine where it is told to: on the CPU, or
on GPU N (``device = "cuda:N"`` in its spec) on a host of several GPUs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from orchestrator.fleet.records import EngineRecord
from orchestrator.gpu.admission import Admission
from orchestrator.gpu.admission import EngineState as AdmissionState
from orchestrator.gpu.planner import Action
from services.base import LoadReport, ProcessBacked


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
        there is no room), and note on its record where it goes. Returns why when the engine
        must be rebuilt there: on the CPU instead, or on another GPU than it was built for (a
        server process the old engine left running is stopped first: it holds that GPU and
        the port)."""
        record = self._records[name]
        decision = await self.admission.admit(name, self.view, self._evict)
        if decision.action is Action.CPU and record.config.device != "cpu":
            record.on_cpu_instead = True
            return decision.message
        if decision.action is not Action.GPU or decision.gpu_index is None:
            return None
        moved = decision.gpu_index != record.built_for_gpu
        record.placed_gpu = decision.gpu_index
        if not moved:
            return None
        if isinstance(record.engine, ProcessBacked):
            await record.engine.stop_process()
        return f"placed on cuda:{decision.gpu_index}: {decision.message}"

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
                gpu_index=rec.placed_gpu,
            )
            for name, rec in self._records.items()
        }

    async def budget(self) -> dict[str, Any] | None:
        """The VRAM budget for the health summary, every GPU's (None without a GPU)."""
        return await self.admission.budget(self.view())
