"""The model catalog: the memory each model needs per precision, and where it may run.

Read from ``config/catalog.toml`` (with ``[gpu].catalog`` layered on top, key by key) and
validated once into frozen models; a bad value names its key and file, as configuration does.
``estimate()`` gives an engine's VRAM need, best source first:

    measured   a previous load of the same adapter, model and precision on this host
    config     the engine's own ``estimate_vram_mb``
    catalog    the entry the engine names (``catalog = "KEY[:PRECISION]"``), else the entry
               matching its adapter and model, at its compute_type

Model names live here (as data), never in the planner.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from orchestrator.config import (
    CONFIG_DIR,
    ConfigError,
    EngineConfig,
    Sources,
    describe_errors,
    merge,
    read_toml,
)
from orchestrator.gpu.measurements import MeasurementStore
from orchestrator.gpu.placement import MIB, Device, EngineView, RunsOn
from services.errors import VoiceOrchestratorError

CATALOG_FILE = CONFIG_DIR / "catalog.toml"
DEFAULT_PRECISION = "default"

MiB = Annotated[float, Field(ge=0)]


class UnknownModel(VoiceOrchestratorError, LookupError):
    """No catalog entry, or no such precision of one, by the name an operator gave."""

    code = "unknown_model"
    status = 404


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Precision(_Model):
    """One precision of a model; unset overheads come from the entry."""

    weights_mb: MiB
    overhead_mb: MiB | None = None
    per_session_mb: MiB | None = None


class CatalogEntry(_Model):
    role: str
    adapter: str | None = None
    names: tuple[str, ...] = ()
    runs_on: RunsOn = RunsOn.GPU_OR_CPU
    prefers: Device = Device.GPU
    default_precision: str = DEFAULT_PRECISION
    overhead_mb: MiB = 0.0
    per_session_mb: MiB = 0.0
    sessions: Annotated[int, Field(ge=1)] = 1
    priority: Annotated[int, Field(ge=0, le=100)] = 50
    precisions: dict[str, Precision]

    @model_validator(mode="after")
    def _default_is_listed(self) -> CatalogEntry:
        if self.default_precision not in self.precisions:
            known = ", ".join(sorted(self.precisions)) or "none"
            raise ValueError(
                f"default_precision {self.default_precision!r} is not among precisions ({known})"
            )
        return self

    def resolve_precision(self, compute_type: str) -> str | None:
        wanted = compute_type.lower()
        if wanted == DEFAULT_PRECISION:
            return self.default_precision
        return wanted if wanted in self.precisions else None

    def vram_bytes(self, precision: str, sessions: int | None = None) -> int:
        """Weights, runtime overhead and the cache for ``sessions`` (default: the entry's)."""
        spec = self.precisions[precision]
        overhead = self.overhead_mb if spec.overhead_mb is None else spec.overhead_mb
        per_session = self.per_session_mb if spec.per_session_mb is None else spec.per_session_mb
        count = self.sessions if sessions is None else sessions
        return int((spec.weights_mb + overhead + per_session * count) * MIB)

    def matches(self, adapter: str, model: str) -> bool | None:
        """True for a name match, None for a ``*`` pattern match (weaker), False otherwise."""
        if self.adapter != adapter:
            return False
        forms = _forms(model)
        if any(forms & _forms(name) for name in self.names if "*" not in name):
            return True
        patterns = [name.lower() for name in self.names if "*" in name]
        if any(fnmatchcase(form, pattern) for form in forms for pattern in patterns):
            return None
        return False


def _forms(model: str) -> set[str]:
    """A model as written, its last path component, and a hub id's local folder name."""
    text = model.strip().rstrip("/").lower()
    return {text, text.rsplit("/", 1)[-1], text.replace("/", "--")}


@dataclass(frozen=True)
class CatalogMatch:
    key: str
    precision: str
    entry: CatalogEntry

    @property
    def label(self) -> str:
        return f"{self.key}:{self.precision}"

    @property
    def vram_bytes(self) -> int:
        return self.entry.vram_bytes(self.precision)


class Catalog(_Model):
    models: dict[str, CatalogEntry] = Field(default_factory=dict)

    def find(self, adapter: str, model: str) -> tuple[str, CatalogEntry] | None:
        """The entry for an engine's adapter and model: a named match beats a pattern."""
        weak: tuple[str, CatalogEntry] | None = None
        for key, entry in self.models.items():
            found = entry.matches(adapter, model)
            if found:
                return key, entry
            if found is None and weak is None:
                weak = key, entry
        return weak

    def lookup(self, adapter: str, model: str, compute_type: str) -> CatalogMatch | None:
        found = self.find(adapter, model)
        if found is None:
            return None
        key, entry = found
        precision = entry.resolve_precision(compute_type)
        return None if precision is None else CatalogMatch(key, precision, entry)

    def entry(self, ref: str) -> CatalogMatch:
        """``KEY`` or ``KEY:PRECISION`` as an operator writes it (``plan --add``)."""
        key, _, precision = ref.partition(":")
        if key not in self.models:
            known = ", ".join(sorted(self.models))
            raise UnknownModel(f"no catalog entry {key!r}; known: {known}")
        entry = self.models[key]
        chosen = entry.resolve_precision(precision or DEFAULT_PRECISION)
        if chosen is None:
            known = ", ".join(sorted(entry.precisions))
            raise UnknownModel(
                f"catalog entry {key!r} has no precision {precision!r}; known: {known}"
            )
        return CatalogMatch(key, chosen, entry)


def load_catalog(files: Iterable[Path] = (CATALOG_FILE,)) -> Catalog:
    """Merge the catalog files in order (later ones win key by key) and validate them."""
    data: dict[str, Any] = {}
    sources: Sources = {}
    for path in files:
        merge(data, read_toml(path), str(path), sources)
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        message = describe_errors(exc, sources).replace("configuration", "catalog", 1)
        raise ConfigError(message) from None


def catalog_files(extra: Path | None) -> list[Path]:
    return [CATALOG_FILE] if extra is None else [CATALOG_FILE, extra]


def engine_key(engine: EngineConfig) -> str:
    """What a measurement is filed under: the same model at the same precision."""
    return f"{engine.adapter}|{engine.model}|{engine.compute_type}"


@dataclass(frozen=True)
class Estimate:
    """An engine's VRAM need (None: nobody knows), where the figure came from, where it runs."""

    vram_bytes: int | None
    source: str
    detail: str
    runs_on: RunsOn


def estimate(
    engine: EngineConfig, catalog: Catalog, store: MeasurementStore | None = None
) -> Estimate:
    """The engine's size, best source first; ``ValueError`` when its ``catalog`` names no entry."""
    match = _named_entry(engine, catalog) or catalog.lookup(
        engine.adapter, engine.model, engine.compute_type
    )
    runs_on = _runs_on(engine, match)
    measured = store.lookup(engine_key(engine)) if store else None
    if measured is not None:
        return Estimate(measured, "measured", engine_key(engine), runs_on)
    if engine.estimate_vram_mb is not None:  # the operator's own figure beats the built-in table
        return Estimate(int(engine.estimate_vram_mb * MIB), "config", "estimate_vram_mb", runs_on)
    if match is not None:
        return Estimate(match.vram_bytes, "catalog", match.label, runs_on)
    if runs_on is RunsOn.CPU:
        return Estimate(None, "none", "runs on the CPU", runs_on)
    return Estimate(None, "none", "no catalog entry and no estimate_vram_mb", runs_on)


def _named_entry(engine: EngineConfig, catalog: Catalog) -> CatalogMatch | None:
    if engine.catalog is None:
        return None
    try:
        return catalog.entry(engine.catalog)
    except UnknownModel as exc:
        raise ValueError(f"catalog = {engine.catalog!r}: {exc}") from None


def planned_sessions(engine: EngineConfig, catalog: Catalog) -> int:
    """Sessions at once the plan budgets the engine's memory for: its catalog entry's
    ``sessions``, else one (an operator's ``estimate_vram_mb`` says nothing of sessions)."""
    if engine.catalog is not None and engine.catalog.partition(":")[0] in catalog.models:
        return catalog.models[engine.catalog.partition(":")[0]].sessions
    found = catalog.find(engine.adapter, engine.model)
    return 1 if found is None else found[1].sessions


def _runs_on(engine: EngineConfig, match: CatalogMatch | None) -> RunsOn:
    """The operator's device decides; the catalog can only narrow it (a CPU-only model)."""
    if engine.device == "cpu":
        return RunsOn.CPU
    if match is None:
        return RunsOn.GPU
    return match.entry.runs_on


def engine_view(name: str, engine: EngineConfig, found: Estimate, **state: Any) -> EngineView:
    """The planner's view of a configured engine; ``state`` sets loaded_on, leased and so on.

    An engine that may use the GPU but has no size at all cannot be planned: guessing zero
    would overcommit the GPU, so it raises ``ValueError`` naming the fix.
    """
    if found.vram_bytes is None and found.runs_on is not RunsOn.CPU:
        raise ValueError(
            f"engine {name!r} has no VRAM estimate: add a catalog entry for"
            f" {engine.adapter} {engine.model!r} or set engines.{name}.estimate_vram_mb"
        )
    return EngineView(
        name=name,
        priority=engine.priority,
        vram_bytes=found.vram_bytes or 0,
        runs_on=found.runs_on,
        prefers=Device.CPU if engine.device == "cpu" else Device.GPU,
        gpu_pin=engine.gpu_pin,
        **state,
    )
