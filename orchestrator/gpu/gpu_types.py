"""GPUs you can rent or own, by name, and the GPU set of one host written as those names.

    t4-16gb                  one T4
    2x-t4-16gb               two T4s (cuda:0 and cuda:1)
    t4-16gb+gtx1660-6gb      a T4 as cuda:0 and a GTX 1660 as cuda:1, in the order written

``plan --gpu`` takes a set; ``[gpu] simulated_gpus`` uses the same words for a simulated host.
Indices are NVML's (PCI bus order), which CUDA follows only with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from orchestrator.gpu.placement import GIB

MAX_GPUS = 8  # the most GPUs one cloud VM carries (GCP a2/a3, AWS p4/p5)


@dataclass(frozen=True)
class GpuType:
    """A GPU you can rent: nominal memory and an approximate on-demand price for one GPU."""

    name: str
    memory_bytes: int
    usd_per_hour: float
    nvml_names: tuple[str, ...]


# Prices are approximate on-demand $/h for a one-GPU machine, for `plan` when the profile sets
# none. From the seeds: T4 0.67 (GCP n1-standard-4 + T4), A100 40 GB 2.95 and A100 80 GB 3.67
# (GCP a2), A10G 1.01 (AWS g5.xlarge), RTX 3090 0.15 (Vast.ai marketplace, 0.13-0.20).
# Our approximations, no seed figure: L4 0.85 (as config/profiles/l4-24gb.toml; GCP g2-standard-4
# lists about 0.7-0.9), H100 80 GB 4.00 (one-GPU on-demand offers span roughly 2.5-11 $/h).
# GTX 1660 (6 GB, the sizing seed's Setup 2 backup card): no cloud rents it and we checked no
# price; 0.05 stands for a few cents an hour on marketplaces; an owned card costs its power.
# Memory is the nominal size; NVML reports a little less (e.g. 15 GiB for a T4).
GPU_TYPES: dict[str, GpuType] = {
    t.name: t
    for t in (
        GpuType("gtx1660-6gb", 6 * GIB, 0.05, ("1660",)),
        GpuType("t4-16gb", 16 * GIB, 0.67, ("T4",)),
        GpuType("l4-24gb", 24 * GIB, 0.85, ("L4",)),
        GpuType("a10g-24gb", 24 * GIB, 1.01, ("A10G",)),
        GpuType("rtx3090-24gb", 24 * GIB, 0.15, ("3090",)),
        GpuType("a100-40gb", 40 * GIB, 2.95, ("A100",)),
        GpuType("a100-80gb", 80 * GIB, 3.67, ("A100",)),
        GpuType("h100-80gb", 80 * GIB, 4.00, ("H100",)),
    )
}


def gpu_type_for(nvml_name: str, total_bytes: int) -> GpuType | None:
    """The named type of a detected GPU: its NVML name, and the memory to tell 40 from 80 GB."""
    words = nvml_name.upper().replace("-", " ").split()
    matches = [t for t in GPU_TYPES.values() if any(n in words for n in t.nvml_names)]
    if not matches:
        return None
    return min(matches, key=lambda t: abs(t.memory_bytes - total_bytes))


@dataclass(frozen=True)
class GpuSet:
    """The GPUs of one host, in index order (``cuda:0`` first)."""

    types: tuple[GpuType, ...]

    @property
    def name(self) -> str:
        """The canonical spelling: runs of one type as ``Nx-TYPE``, joined by ``+``."""
        runs: list[tuple[str, int]] = []
        for gpu in self.types:
            if runs and runs[-1][0] == gpu.name:
                runs[-1] = (gpu.name, runs[-1][1] + 1)
            else:
                runs.append((gpu.name, 1))
        return "+".join(name if count == 1 else f"{count}x-{name}" for name, count in runs)

    @property
    def usd_per_hour(self) -> float:
        """The sum of one-GPU machine prices: an upper bound for one host (billed once)."""
        return round(sum(gpu.usd_per_hour for gpu in self.types), 2)


_TERM = re.compile(r"^(?:(?P<count>[0-9]+)x-)?(?P<name>[a-z0-9-]+)$")


def parse_gpu_set(text: str) -> GpuSet:
    """``TYPE``, ``Nx-TYPE`` and ``A+B`` as above; ``ValueError`` naming the known types."""
    types: list[GpuType] = []
    for term in text.strip().lower().split("+"):
        found = _TERM.match(term.strip())
        gpu = GPU_TYPES.get(found["name"]) if found else None
        if found is None or gpu is None:
            known = ", ".join(sorted(GPU_TYPES))
            raise ValueError(
                f"unknown GPU type {term.strip()!r} in {text!r}; known types: {known};"
                " several GPUs: 2x-t4-16gb or t4-16gb+gtx1660-6gb"
            )
        count = int(found["count"] or 1)
        if count < 1:
            raise ValueError(f"{term.strip()!r}: a GPU count is 1 or more")
        types += [gpu] * count
    if len(types) > MAX_GPUS:
        raise ValueError(f"{text!r} has {len(types)} GPUs; one host has at most {MAX_GPUS}")
    return GpuSet(tuple(types))
