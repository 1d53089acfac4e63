"""VRAM measured after each load, kept across restarts so estimates only matter once per host.

A small JSON file under the state directory (``vram_measurements.json``), rewritten atomically
on each measurement; ``path=None`` keeps it in memory (tests). Keys come from
``orchestrator.catalog.engine_key`` (adapter, model and precision), so a measurement follows the
model, not the engine's name. A damaged file is logged and ignored, never fatal: the planner
then falls back to the catalog's estimates.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAME = "vram_measurements.json"


@dataclass(frozen=True)
class Measurement:
    vram_bytes: int
    measured_at: float


class MeasurementStore:
    """``record_measurement`` after a load, ``lookup`` before the next plan."""

    def __init__(self, path: Path | None, clock: Callable[[], float] = time.time) -> None:
        self._path = path
        self._clock = clock
        self._items: dict[str, Measurement] = self._read() if path else {}

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> MeasurementStore:
        return cls(state_dir / FILE_NAME)

    def record_measurement(self, engine_key: str, vram_bytes: int) -> None:
        if vram_bytes < 0:
            raise ValueError(f"{engine_key}: a measurement cannot be negative ({vram_bytes})")
        self._items[engine_key] = Measurement(int(vram_bytes), self._clock())
        self._write()

    def lookup(self, engine_key: str) -> int | None:
        item = self._items.get(engine_key)
        return item.vram_bytes if item else None

    def get(self, engine_key: str) -> Measurement | None:
        return self._items.get(engine_key)

    def forget(self, engine_key: str) -> None:
        if self._items.pop(engine_key, None) is not None:
            self._write()

    def items(self) -> dict[str, Measurement]:
        return dict(self._items)

    def _read(self) -> dict[str, Measurement]:
        assert self._path is not None
        try:
            raw = json.loads(self._path.read_text())
            return {
                str(key): Measurement(int(value["vram_bytes"]), float(value["measured_at"]))
                for key, value in raw["measurements"].items()
            }
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ignoring unreadable VRAM measurements in %s: %s", self._path, exc)
            return {}

    def _write(self) -> None:
        if self._path is None:
            return
        body = {
            "version": 1,
            "measurements": {
                key: {"vram_bytes": item.vram_bytes, "measured_at": item.measured_at}
                for key, item in sorted(self._items.items())
            },
        }
        self._path.parent.mkdir(parents=True, exist_ok=True)
        scratch = self._path.with_name(self._path.name + ".tmp")
        scratch.write_text(json.dumps(body, indent=2) + "\n")
        scratch.replace(self._path)
