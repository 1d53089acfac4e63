"""Hibernation settings edited in the console: validated, then saved as a TOML override file.

The running ladder keeps the thresholds it started with (its single writer owns them); a saved
override takes effect when the server is restarted with it layered on top of the profile:

    python -m orchestrator serve --config <state.dir>/console-overrides.toml

(or copy its ``[hibernation]`` tables into the ``--config`` file already in use). Validation is
the configuration's own (``HibernationConfig``), so the console accepts exactly what a restart
would, and errors name the key path.
"""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchestrator.config import HibernationConfig
from orchestrator.core.idle import ORDER
from services.errors import VoiceOrchestratorError

FILE_NAME = "console-overrides.toml"
TOP_KEYS = (
    "warm_after_s",
    "cool_after_s",
    "cold_after_s",
    "dormant_after_s",
    "tick_s",
    "wake_timeout_s",
)
ACTION_KEYS = (
    "unload_roles",
    "park_roles",
    "stop_processes",
    "host_power_off",
    "telemetry_interval_s",
)


class OverrideError(VoiceOrchestratorError, ValueError):
    """Hibernation overrides the console cannot apply; ``problems`` lists each, by key path."""

    code = "invalid_override"
    status = 400

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def proposed(current: HibernationConfig, changes: dict[str, Any]) -> HibernationConfig:
    """The current settings with ``changes`` applied, validated; ``OverrideError`` lists why not."""
    data = current.model_dump(mode="json")
    unknown = [key for key in changes if key not in (*TOP_KEYS, "actions")]
    actions = changes.get("actions", {})
    if not isinstance(actions, dict):
        raise OverrideError(["hibernation.actions: expected an object per state"])
    for state, table in actions.items():
        if state not in data["actions"] or not isinstance(table, dict):
            unknown.append(f"actions.{state}")
            continue
        unknown += [f"actions.{state}.{key}" for key in table if key not in ACTION_KEYS]
        data["actions"][state].update(table)
    if unknown:
        raise OverrideError([f"hibernation.{key}: unknown setting" for key in unknown])
    data.update({key: value for key, value in changes.items() if key in TOP_KEYS})
    try:
        return HibernationConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            path = ".".join(str(part) for part in ("hibernation", *error["loc"]))
            problems.append(f"{path}: {error['msg'].removeprefix('Value error, ')}")
        raise OverrideError(problems) from None


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(json.dumps(str(item)) for item in value) + "]"
    return repr(float(value))


def to_toml(settings: HibernationConfig, *, note: str) -> str:
    data = settings.model_dump(mode="json")
    lines = [f"# {line}" for line in note.splitlines()]
    lines += ["", "[hibernation]"]
    lines += [f"{key} = {_value(data[key])}" for key in TOP_KEYS]
    for state in ORDER:
        lines += ["", f"[hibernation.actions.{state.value}]"]
        lines += [f"{key} = {_value(data['actions'][state.value][key])}" for key in ACTION_KEYS]
    return "\n".join(lines) + "\n"


def save(path: Path, settings: HibernationConfig, *, who: str) -> None:
    """Write the override file atomically (a restart never reads half of one)."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    note = (
        f"Hibernation settings saved in the console by {who} at {when}.\n"
        f"They take effect on restart: python -m orchestrator serve --config {path}"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".toml.partial")
    partial.write_text(to_toml(settings, note=note), encoding="utf-8")
    partial.replace(path)


def saved(path: Path) -> HibernationConfig | None:
    """The settings in the override file, or None when there is none (or it no longer reads)."""
    try:
        with path.open("rb") as handle:
            return HibernationConfig.model_validate(tomllib.load(handle).get("hibernation", {}))
    except (OSError, tomllib.TOMLDecodeError, ValidationError):
        return None
