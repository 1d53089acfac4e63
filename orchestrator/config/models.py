"""The configuration's frozen models: every table and key, with its bounds and defaults.

Loading (layers, profiles, environment, error wording) is in ``loading``; this module only says
what a valid configuration is.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestrator.config.duplex import DuplexConfig
from orchestrator.config.gateway import GatewayConfig
from orchestrator.config.scale import ScaleConfig
from orchestrator.core.idle import IdleState, Thresholds
from services.adapter_roles import (
    ADAPTER_ROLES,
    adapter_names,
    roles_of,
    serves,
)
from services.base import Role
from services.errors import VoiceOrchestratorError
from services.translation import UnsupportedLanguage, known_language

AUTO_PROFILE = "auto"
_DEVICE = re.compile(r"^(cpu|cuda(:[0-9]+)?)$")
_HOST = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$", re.IGNORECASE)  # a DNS name or IP

Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(gt=0)]


class ConfigError(VoiceOrchestratorError):
    """A configuration problem, worded for the operator: which key, which file, what is wrong."""

    code = "invalid_config"


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
    # The address browsers use for the console (``https://console.example.com``): a state-changing
    # request whose Origin is anything else is refused. Unset: derived from the bind address.
    console_public_origin: str | None = None
    open_paths: tuple[str, ...] = ("/health/live",)
    shutdown_grace_s: Seconds = 10.0
    # A connection with no complete request this long is closed (idle keep-alive, or a client
    # that never finishes its request line and headers).
    idle_timeout_s: Seconds = 75.0

    @field_validator("console_public_origin")
    @classmethod
    def _origin(cls, value: str | None) -> str | None:
        return None if value is None else normalise_origin(value)

    @model_validator(mode="after")
    def _proxy_needs_origin(self) -> ServerConfig:
        if self.console_trust_proxy and self.console_public_origin is None:
            raise ValueError(
                "console_trust_proxy needs console_public_origin: the https:// address the "
                "proxy publishes the console at"
            )
        return self


class ApiConfig(_Model):
    """What one request to the voice API may ask for, beyond the upload's 25 MB."""

    # Decoded audio longer than this is refused (413) as soon as decoding reaches it: a few MB
    # of compressed silence can decode to hours. OpenAI's transcription limit is 1500 s.
    max_audio_s: Annotated[float, Field(gt=0, le=86_400)] = 1500.0
    body_timeout_s: Seconds = 30.0  # the whole body must arrive within this (else 408)
    # Images for the vision-language role (chat ``image_url`` parts, Realtime ``input_image``):
    # each file at most this many bytes and pixels (413 beyond), this many in one request.
    # A chat body may be 1 MiB plus max_images data URLs of max_image_bytes (base64: 4/3).
    max_image_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 5 * 1024 * 1024
    max_image_pixels: Annotated[int, Field(ge=1)] = 25_000_000
    max_images: Annotated[int, Field(ge=1, le=32)] = 4
    # Hosts whose http(s) image URLs the server fetches (no redirects followed); empty: only
    # data URLs are taken, so the server never fetches an address a client picked.
    allow_image_urls: tuple[str, ...] = ()
    image_fetch_timeout_s: Seconds = 10.0

    @field_validator("allow_image_urls")
    @classmethod
    def _hosts(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        for host in hosts:
            if not _HOST.match(host):
                raise ValueError(f"{host!r} is not a host name like images.example.com")
        return tuple(host.lower() for host in hosts)

    # POST /translate (LibreTranslate's char_limit, batch_limit and alternatives_limit)
    translate_char_limit: Annotated[int, Field(ge=1)] = 5000  # characters per text
    translate_batch_limit: Annotated[int, Field(ge=1)] = 64  # texts per request
    translate_alternatives_limit: Annotated[int, Field(ge=0, le=10)] = 3


def normalise_origin(text: str) -> str:
    """``scheme://host[:port]`` as browsers send it in ``Origin`` (lower case, no default port);
    ``ValueError`` for anything else (a path, credentials, another scheme)."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        raise ValueError(f"{text!r} is not an origin like https://console.example.com") from None
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if scheme not in ("http", "https") or not host:
        raise ValueError(f"{text!r} is not an http(s) origin like https://console.example.com")
    if parts.username or parts.password or parts.path not in ("", "/") or parts.query:
        raise ValueError(f"{text!r} has more than scheme://host[:port]")
    if parts.fragment or "#" in text:
        raise ValueError(f"{text!r} has more than scheme://host[:port]")
    host = f"[{host}]" if ":" in host else host
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


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
    """What entering one idle state does; deeper states also do what shallower ones did.

    ``park_roles`` keep the weights of engines that can park in host RAM and free the device
    (resuming copies them back); an engine that cannot park is unloaded instead. A role that
    ``unload_roles`` names too (here or in a shallower state) is unloaded: unloading wins, so a
    file written before parking existed (``unload_roles = ["tts", "duplex"]`` for COOL) keeps
    doing what it did."""

    unload_roles: tuple[Role, ...] = ()
    park_roles: tuple[Role, ...] = ()
    stop_processes: bool = False
    host_power_off: bool = False
    telemetry_interval_s: Seconds = 5.0


_ALL_ROLES = tuple(Role)
DEFAULT_ACTIONS: dict[IdleState, StateActions] = {
    IdleState.ACTIVE: StateActions(telemetry_interval_s=2.0),
    IdleState.WARM: StateActions(telemetry_interval_s=15.0),
    IdleState.COOL: StateActions(
        park_roles=(Role.TTS, Role.DUPLEX, Role.VLM, Role.TRANSLATION), telemetry_interval_s=30.0
    ),
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
    # Several simulated GPUs instead, written as `plan --gpu` takes them: "2x-t4-16gb",
    # "t4-16gb+gtx1660-6gb" (cuda:0 first). Checked when the backend is built.
    simulated_gpus: str | None = None
    recovery_timeout_s: Seconds = 30.0
    recovery_poll_s: Seconds = 0.5
    catalog: Path | None = None
    # Host RAM never filled by parking: an engine whose weights would not fit is unloaded instead.
    host_reserve_mb: Annotated[float, Field(ge=0)] = 2048.0


class EngineConfig(_Model):
    role: Role
    adapter: str
    model: str
    # cpu; cuda: a GPU the VRAM planner picks; cuda:N: GPU N only (NVML's index, PCI bus order)
    device: str = "cpu"
    compute_type: str = "default"
    priority: Annotated[int, Field(ge=0, le=100)] = 50
    preload: bool = True
    estimate_vram_mb: Annotated[float, Field(ge=0)] | None = None
    estimate_ram_mb: Annotated[float, Field(ge=0)] | None = None
    # Size the engine by this catalog entry ("KEY" or "KEY:PRECISION") instead of finding the
    # entry by adapter and model (a measured size still wins).
    catalog: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError(
                f"device {value!r}: cpu, cuda (the VRAM planner picks the GPU) or cuda:N"
                " (that GPU only, N from 0)"
            )
        return value

    @property
    def gpu_pin(self) -> int | None:
        """The GPU ``cuda:N`` pins the engine to; None for cpu and for a bare cuda."""
        _kind, _, index = self.device.partition(":")
        return int(index) if index else None

    @model_validator(mode="after")
    def _known_adapter(self) -> EngineConfig:
        if self.adapter not in ADAPTER_ROLES:
            known = ", ".join(adapter_names())
            raise ValueError(f"unknown adapter {self.adapter!r}; known adapters: {known}")
        if not serves(self.adapter, self.role):
            roles = " and ".join(str(r) for r in roles_of(self.adapter))
            raise ValueError(f"adapter {self.adapter!r} serves role {roles}, not {self.role}")
        return self


class SessionsConfig(_Model):
    """Voice sessions on the cascade: which engines, when a turn ends, and the limits."""

    vad: str = "vad"
    asr: str = "asr"
    llm: str = "llm"
    tts: str = "tts"
    # Answers while the conversation holds an image (a Realtime ``input_image``); leased only
    # once an image arrives, so a session without photos never loads it.
    vlm: str = "vlm"
    translation: str = "translation"  # the engine that translates replies (reply_language)
    # Speak the tutor's replies in this language (LibreTranslate's code: "de", "zh-Hans"):
    # each sentence the LLM writes in reply_source_language is translated before TTS. For an
    # LLM that does not answer in that language reliably. Unset: spoken as written.
    reply_language: str | None = None
    reply_source_language: str = "en"

    @field_validator("reply_language", "reply_source_language")
    @classmethod
    def _language(cls, code: str | None) -> str | None:
        if code is None:
            return None
        try:
            return known_language(code, "language")
        except UnsupportedLanguage as exc:
            raise ValueError(exc.message) from None

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
    api: ApiConfig = ApiConfig()
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
    gateway: GatewayConfig = GatewayConfig()
    scale: ScaleConfig = ScaleConfig()

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

    @model_validator(mode="after")
    def _drain_outlasts_a_session(self) -> AppConfig:
        """A replica taken away must be able to finish its longest session (a lesson)."""
        drain = self.scale.graceful_shutdown_timeout_s
        longest = self.sessions.max_minutes * 60
        if drain is not None and drain < longest:
            raise ValueError(
                f"scale.graceful_shutdown_timeout_s ({drain:g} s) is shorter than a session may"
                f" last (sessions.max_minutes = {self.sessions.max_minutes:g}, {longest:g} s):"
                " a draining replica would cut a lesson"
            )
        return self
