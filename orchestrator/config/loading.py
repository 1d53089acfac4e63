"""Configuration: TOML files merged in layers, validated once at start into frozen models.

Layers, later ones winning key by key:

1. ``config/default.toml``            shared defaults; ``profile = "auto"``
2. ``config/profiles/<profile>.toml`` engines and costs for one GPU size (``auto`` picks one
                                      from the GPU that NVML finds, ``cpu`` when there is none)
3. ``--config FILE``                  the operator's own file
4. environment ``VO__<KEY>__<KEY>``   one key each, e.g. ``VO__SERVER__API_PORT=11500`` or
                                      ``VO__ENGINES__ASR__MODEL=/models/whisper``; values are
                                      read as TOML literals (``true``, ``30``) else as plain text

Every error names the key path and the file (or variable) that set it.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchestrator.config.models import AUTO_PROFILE, AppConfig, ConfigError

CONFIG_DIR = Path(os.environ.get("VO_CONFIG_DIR", Path(__file__).resolve().parents[2] / "config"))
ENV_PREFIX = "VO__"
CONSOLE_OVERRIDES = "console-overrides.toml"  # written by the console, in the state dir

# -- loading ----------------------------------------------------------------------------------

Sources = dict[tuple[str, ...], str]


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def merge(
    base: dict[str, Any],
    layer: Mapping[str, Any],
    source: str,
    sources: Sources,
    prefix: tuple[str, ...] = (),
) -> None:
    """Merge ``layer`` into ``base`` in place, remembering which source set each key."""
    for key, value in layer.items():
        path = (*prefix, key)
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merge(base[key], value, source, sources, path)
        else:
            base[key] = _plain(value)
        sources[path] = source


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


def env_overrides(environ: Mapping[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """One nested layer per ``VO__A__B=value`` variable, named after the variable."""
    layers = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX:
            continue
        keys = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if not all(keys):
            raise ConfigError(f"environment variable {name}: empty key segment")
        layer: dict[str, Any] = {keys[-1]: _env_value(environ[name])}
        for key in reversed(keys[:-1]):
            layer = {key: layer}
        layers.append((f"environment variable {name}", layer))
    return layers


def _env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def profile_path(name: str, config_dir: Path = CONFIG_DIR) -> Path:
    path = config_dir / "profiles" / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(list_profiles(config_dir))
        raise ConfigError(f"unknown profile {name!r}; known profiles: {known}")
    return path


def list_profiles(config_dir: Path = CONFIG_DIR) -> list[str]:
    return sorted(path.stem for path in (config_dir / "profiles").glob("*.toml"))


def load_config(
    *,
    profile: str | None = None,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    config_dir: Path = CONFIG_DIR,
    gpu_memory_bytes: int | None = None,
) -> AppConfig:
    """Read every layer, resolve ``auto``, validate, and return the frozen configuration.

    ``gpu_memory_bytes`` is the detected GPU's total memory (None: no GPU); it only matters
    when the profile is ``auto``.
    """
    environ = os.environ if environ is None else environ
    sources: Sources = {}
    data: dict[str, Any] = {}
    default_file = config_dir / "default.toml"
    merge(data, read_toml(default_file), str(default_file), sources)
    user = read_toml(config_file) if config_file else {}
    env_layers = env_overrides(environ)

    chosen = profile or _last_profile_setting(data, user, env_layers)
    if chosen == AUTO_PROFILE:
        chosen = profile_for_gpu(gpu_memory_bytes)
    profile_file = profile_path(chosen, config_dir)
    merge(data, read_toml(profile_file), str(profile_file), sources)
    if config_file:
        merge(data, user, str(config_file), sources)
    overrides = _console_overrides(data, env_layers)
    if overrides is not None:
        merge(data, read_toml(overrides), str(overrides), sources)
    for source, layer in env_layers:
        merge(data, layer, source, sources)
    data["profile"] = chosen
    try:
        return AppConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, sources)) from None


def _console_overrides(
    data: dict[str, Any], env_layers: list[tuple[str, dict[str, Any]]]
) -> Path | None:
    """``<state.dir>/console-overrides.toml``, the hibernation settings an operator saved in the
    console, when it exists; it layers over the files and under the environment. Only its
    ``[hibernation]`` tables count: a file the console writes never changes anything else."""
    state_dir = data.get("state", {}).get("dir")
    for _source, layer in env_layers:
        state_dir = layer.get("state", {}).get("dir", state_dir)
    if not isinstance(state_dir, str):
        return None
    path = Path(state_dir).expanduser() / CONSOLE_OVERRIDES
    if not path.is_file():
        return None
    stray = sorted(set(read_toml(path)) - {"hibernation"})
    if stray:
        raise ConfigError(f"{path}: only [hibernation] may be set here, not {', '.join(stray)}")
    return path


def _last_profile_setting(
    data: dict[str, Any], user: dict[str, Any], env_layers: list[tuple[str, dict[str, Any]]]
) -> str:
    chosen = str(data.get("profile", AUTO_PROFILE))
    chosen = str(user.get("profile", chosen))
    for _source, layer in env_layers:
        chosen = str(layer.get("profile", chosen))
    return chosen


def profile_for_gpu(total_bytes: int | None) -> str:
    """The profile for a GPU of this size: the largest whose memory the GPU has."""
    if total_bytes is None:
        return "cpu"
    gib = total_bytes / 2**30
    for name, size in (("a100-80gb", 79), ("a100-40gb", 39), ("l4-24gb", 22), ("t4-16gb", 14)):
        if gib >= size:
            return name
    return "cpu"


def describe_errors(exc: ValidationError, sources: Sources) -> str:
    lines = []
    for error in exc.errors():
        path = tuple(str(part) for part in error["loc"])
        key = ".".join(path) or "(top level)"
        message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        message = message.removeprefix("Value error, ")
        origin = _origin(path, sources)
        given = error.get("input")
        scalar = isinstance(given, str | int | float | bool) and error["type"] != "missing"
        value = f" (got {given!r})" if scalar and error["type"] != "extra_forbidden" else ""
        lines.append(f"{origin}: {key}: {message}{value}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _origin(path: tuple[str, ...], sources: Sources) -> str:
    for length in range(len(path), 0, -1):
        if path[:length] in sources:
            return sources[path[:length]]
    return "configuration"
