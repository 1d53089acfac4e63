"""Configuration: TOML files merged in layers, validated once at start into frozen models.

``models`` says what a valid configuration is; ``loading`` reads the layers and words the errors.
This package is the one place the rest of the code takes its configuration from.
"""

from orchestrator.config.duplex import DuplexConfig
from orchestrator.config.gateway import GatewayConfig
from orchestrator.config.loading import (
    CONFIG_DIR,
    CONSOLE_OVERRIDES,
    ENV_PREFIX,
    Sources,
    describe_errors,
    env_overrides,
    list_profiles,
    load_config,
    merge,
    profile_for_gpu,
    profile_path,
    read_toml,
)
from orchestrator.config.models import (
    AUTO_PROFILE,
    DEFAULT_ACTIONS,
    ApiConfig,
    AppConfig,
    ConfigError,
    CostsConfig,
    EngineConfig,
    GpuConfig,
    HibernationConfig,
    HostPowerConfig,
    ModelsConfig,
    Port,
    RoutingConfig,
    Seconds,
    ServerConfig,
    SessionsConfig,
    StateActions,
    StateConfig,
)
from orchestrator.config.scale import ScaleConfig

__all__ = [
    "AUTO_PROFILE",
    "CONFIG_DIR",
    "CONSOLE_OVERRIDES",
    "DEFAULT_ACTIONS",
    "ENV_PREFIX",
    "ApiConfig",
    "AppConfig",
    "ConfigError",
    "CostsConfig",
    "DuplexConfig",
    "EngineConfig",
    "GatewayConfig",
    "GpuConfig",
    "HibernationConfig",
    "HostPowerConfig",
    "ModelsConfig",
    "Port",
    "RoutingConfig",
    "ScaleConfig",
    "Seconds",
    "ServerConfig",
    "SessionsConfig",
    "Sources",
    "StateActions",
    "StateConfig",
    "describe_errors",
    "env_overrides",
    "list_profiles",
    "load_config",
    "merge",
    "profile_for_gpu",
    "profile_path",
    "read_toml",
]
