"""Host providers: how the gateway starts, stops and looks at the GPU host (``base.py``).

Only the configured provider's module is imported, so a gateway on AWS never loads the Google
client and a local one loads neither.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.config.gateway import (
    AwsProvider,
    CommandProvider,
    GcpProvider,
    LocalProvider,
    ProviderConfig,
)
from orchestrator.gateway.providers.base import HostProvider


def create_provider(config: ProviderConfig, state_dir: Path, host_key: str) -> HostProvider:
    if isinstance(config, LocalProvider):
        from orchestrator.gateway.providers.local import LocalHost

        return LocalHost(config, state_dir / "gateway", host_key)
    if isinstance(config, CommandProvider):
        from orchestrator.gateway.providers.command import CommandHost

        return CommandHost(config)
    if isinstance(config, GcpProvider):
        from orchestrator.gateway.providers.gcp import GcpHost

        return GcpHost(config)
    if isinstance(config, AwsProvider):
        from orchestrator.gateway.providers.aws import AwsHost

        return AwsHost(config)
    raise TypeError(f"no provider for {type(config).__name__}")
