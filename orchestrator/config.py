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
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from orchestrator.duplex_config import DuplexConfig
from orchestrator.ladder import IdleState, Thresholds
from services.base import Role
from services.registry import ADAPTERS

CONFIG_DIR = Path(
    os.environ.get("VO_CONFIG_DIR", Path(__file__).resolve().parent.parent / "config")
)
ENV_PREFIX = "VO__"
AUTO_PROFILE = "auto"
CONSOLE_OVERRIDES = "console-overrides.toml"  # written by the console, in the state dir

Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(gt=0)]


class ConfigError(Exception):
    """A configuration problem, worded for the operator: which key, which file, what is wrong."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Model):
    api_host: str = "0.0.0.0"
    api_port: Port = 11400
    console_host: str = "127.0.0.1"
    console_port: Port = 8766
    # Behind a TLS-terminating proxy on this host: believe its X-Forwarded-Proto/-For headers
    # (Secure cookies, the audit log's client address). Off, they are ignored: anyone can send them.
    console_trust_proxy: bool = False
    open_paths: tuple[str, ...] = ("/health/live",)
    shutdown_grace_s: Seconds = 10.0


class ModelsConfig(_Model):
    dir: Path = Path("~/.cache/voice-orchestrator/models")
    auto_download: bool = True

    @model_validator(mode="after")
    def _expand(self) -> ModelsConfig:
        object.__setattr__(self, "dir", self.dir.expanduser())
        return self


class StateConfig(_Model):
    dir: Path = Path("~/.local/state/voice-orchestrator")

    @model_validator(mode="after")
    def _expand(self) -> StateConfig:
        object.__setattr__(self, "dir", self.dir.expanduser())
        return self


class StateActions(_Model):
    """What entering one idle state does; deeper states also do what shallower ones did."""

    unload_roles: tuple[Role, ...] = ()
    stop_processes: bool = False
    host_power_off: bool = False
    telemetry_interval_s: Seconds = 5.0


_ALL_ROLES = tuple(Role)
DEFAULT_ACTIONS: dict[IdleState, StateActions] = {
    IdleState.ACTIVE: StateActions(telemetry_interval_s=2.0),
    IdleState.WARM: StateActions(telemetry_interval_s=15.0),
    IdleState.COOL: StateActions(unload_roles=(Role.TTS, Role.DUPLEX), telemetry_interval_s=30.0),
    IdleState.COLD: StateActions(unload_roles=_ALL_ROLES, telemetry_interval_s=60.0),
    IdleState.DORMANT: StateActions(
        unload_roles=_ALL_ROLES, stop_processes=True, host_power_off=True, telemetry_interval_s=60.0
    ),
}


class HibernationConfig(_Model):
    warm_after_s: Seconds = 30.0
    cool_after_s: Seconds = 300.0
    cold_after_s: Seconds = 1800.0
    dormant_after_s: Seconds = 7200.0
    tick_s: Seconds = 1.0
    wake_timeout_s: Seconds = 60.0
    actions: dict[IdleState, StateActions] = Field(default_factory=lambda: dict(DEFAULT_ACTIONS))

    @model_validator(mode="after")
    def _ascending(self) -> HibernationConfig:
        steps = [self.warm_after_s, self.cool_after_s, self.cold_after_s, self.dormant_after_s]
        if steps != sorted(steps):
            raise ValueError("thresholds must grow: warm <= cool <= cold <= dormant")
        merged = {**DEFAULT_ACTIONS, **self.actions}
        object.__setattr__(self, "actions", merged)
        return self

    def thresholds(self) -> Thresholds:
        return Thresholds(
            self.warm_after_s, self.cool_after_s, self.cold_after_s, self.dormant_after_s
        )


class HostPowerConfig(_Model):
    """What DORMANT does to the machine itself. A stopped host cannot wake itself."""

    action: Literal["none", "command", "simulated"] = "none"
    stop_command: str | None = None
    start_command: str | None = None
    timeout_s: Seconds = 120.0

    @model_validator(mode="after")
    def _commands_given(self) -> HostPowerConfig:
        if self.action == "command" and not self.stop_command:
            raise ValueError("action 'command' needs stop_command")
        return self


class CostsConfig(_Model):
    """What the machine costs while it runs, and the grant that pays for it (dates are UTC days)."""

    gpu_type: str = "none"
    usd_per_hour: Annotated[float, Field(ge=0)] = 0.0
    credits_usd: Annotated[float, Field(ge=0)] = 0.0
    credits_start: date | None = None
    credits_expire: date | None = None
    burn_window_days: Annotated[float, Field(gt=0)] = 7.0

    @model_validator(mode="after")
    def _grant_dates_in_order(self) -> CostsConfig:
        if self.credits_start and self.credits_expire and self.credits_expire <= self.credits_start:
            raise ValueError("credits_expire must come after credits_start")
        return self


class GpuConfig(_Model):
    """How the VRAM planner treats the GPU: the reserve it never fills, and where it looks."""

    reserve_mb: Annotated[float, Field(ge=0)] = 1024.0
    backend: Literal["nvml", "simulated"] = "nvml"
    simulated_total_mb: Annotated[float, Field(gt=0)] = 16384.0
    recovery_timeout_s: Seconds = 30.0
    recovery_poll_s: Seconds = 0.5
    catalog: Path | None = None


class EngineConfig(_Model):
    role: Role
    adapter: str
    model: str
    device: Literal["cpu", "cuda"] = "cpu"
    compute_type: str = "default"
    priority: Annotated[int, Field(ge=0, le=100)] = 50
    preload: bool = True
    estimate_vram_mb: Annotated[float, Field(ge=0)] | None = None
    estimate_ram_mb: Annotated[float, Field(ge=0)] | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_adapter(self) -> EngineConfig:
        if self.adapter not in ADAPTERS:
            known = ", ".join(sorted(ADAPTERS))
            raise ValueError(f"unknown adapter {self.adapter!r}; known adapters: {known}")
        adapter_role = ADAPTERS[self.adapter][0]
        if adapter_role is not self.role:
            raise ValueError(
                f"adapter {self.adapter!r} serves role {adapter_role}, not {self.role}"
            )
        return self


class SessionsConfig(_Model):
    """Voice sessions on the cascade: which engines, when a turn ends, and the limits."""

    vad: str = "vad"
    asr: str = "asr"
    llm: str = "llm"
    tts: str = "tts"
    instructions: str = "You are a friendly, patient tutor. Answer in one or two short sentences."
    end_of_turn_silence_ms: Annotated[int, Field(ge=100, le=5000)] = 400
    vad_threshold: Annotated[float, Field(gt=0, lt=1)] = 0.5
    history_tokens: Annotated[int, Field(ge=100)] = 3000
    max_minutes: Annotated[float, Field(gt=0)] = 180.0
    max_per_key: Annotated[int, Field(ge=1)] = 4
    max_append_bytes: Annotated[int, Field(ge=1024)] = 1_048_576
    max_utterance_s: Annotated[float, Field(gt=0)] = 60.0
    partial_transcript_s: Annotated[float, Field(ge=0)] = 1.0  # 0: no partial transcripts
    llm_options: dict[str, Any] = Field(default_factory=dict)
    # Engines tried in order when the one above fails; failed ones are probed again.
    fallbacks: dict[Literal["asr", "llm", "tts"], tuple[str, ...]] = Field(default_factory=dict)
    fallback_probe_s: Seconds = 30.0
    engine_timeout_s: Seconds = 15.0  # an engine silent this long mid-reply counts as failed


class RoutingConfig(_Model):
    default: tuple[str, ...] = ("asr", "tts")


class AppConfig(_Model):
    profile: str = AUTO_PROFILE
    server: ServerConfig = ServerConfig()
    models: ModelsConfig = ModelsConfig()
    state: StateConfig = StateConfig()
    hibernation: HibernationConfig = HibernationConfig()
    host_power: HostPowerConfig = HostPowerConfig()
    costs: CostsConfig = CostsConfig()
    gpu: GpuConfig = GpuConfig()
    engines: dict[str, EngineConfig] = Field(default_factory=dict)
    routing: RoutingConfig = RoutingConfig()
    sessions: SessionsConfig = SessionsConfig()
    duplex: DuplexConfig = DuplexConfig()

    @model_validator(mode="before")
    @classmethod
    def _drop_disabled_engines(cls, data: Any) -> Any:
        """``[engines.X] enabled = false`` removes an engine a profile defines."""
        if isinstance(data, dict) and isinstance(data.get("engines"), dict):
            engines = {
                name: table
                for name, table in data["engines"].items()
                if not (isinstance(table, dict) and table.get("enabled") is False)
            }
            for table in engines.values():
                if isinstance(table, dict):
                    table.pop("enabled", None)
            data = {**data, "engines": engines}
        return data

    @model_validator(mode="after")
    def _routes_name_engines(self) -> AppConfig:
        unknown = [name for name in self.routing.default if name not in self.engines]
        if unknown:
            raise ValueError(f"routing.default names unknown engines: {', '.join(unknown)}")
        return self


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
