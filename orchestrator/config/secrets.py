"""API keys and the console password: from the environment, or from 0600 files, never the repo.

Voice API keys, first found wins:
  ``VO_API_KEYS``        comma-separated keys
  ``VO_API_KEY_FILE``    a file with one key per line (must not be readable by others)
  ``<state.dir>/api_key`` created with a random key on first start (mode 0600)

Console password: ``VO_CONSOLE_PASSWORD``, else ``<state.dir>/console_password``, created the
same way. The log says where a generated secret was written, never the secret itself.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from orchestrator.config.models import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Secrets:
    api_keys: tuple[str, ...]
    console_password: str
    # Keys of gateways in front of this server (VO_GATEWAY_KEYS): valid API keys whose
    # sessions are counted per the client the gateway names (X-Voice-Client), not per key.
    gateway_keys: tuple[str, ...] = ()

    def api_key_valid(self, candidate: str) -> bool:
        return _one_of(candidate, self.api_keys + self.gateway_keys)

    def is_gateway_key(self, candidate: str) -> bool:
        return _one_of(candidate, self.gateway_keys)

    def console_password_valid(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode(), self.console_password.encode())


def _one_of(candidate: str, keys: tuple[str, ...]) -> bool:
    ok = False
    for key in keys:  # compare against all, in constant time each
        ok |= hmac.compare_digest(candidate.encode(), key.encode())
    return ok


def read_private_file(path: Path) -> str:
    """Read a secret file, refusing one that group or others may read."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"secret file not found: {path}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"secret file {path} is open to other users (mode {stat.filemode(mode)}); "
            f"run: chmod 600 {path}"
        )
    return path.read_text(encoding="utf-8").strip()


def _generated(path: Path, what: str) -> str:
    if path.exists():
        return read_private_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    log.warning("generated a %s and wrote it to %s (mode 0600)", what, path)
    return value


def load_secrets(state_dir: Path, environ: Mapping[str, str] | None = None) -> Secrets:
    environ = os.environ if environ is None else environ
    if environ.get("VO_API_KEYS"):
        keys = tuple(k.strip() for k in environ["VO_API_KEYS"].split(",") if k.strip())
    elif environ.get("VO_API_KEY_FILE"):
        text = read_private_file(Path(environ["VO_API_KEY_FILE"]))
        keys = tuple(line.strip() for line in text.splitlines() if line.strip())
    else:
        keys = (_generated(state_dir / "api_key", "voice API key"),)
    if not keys:
        raise ConfigError("no API key configured: VO_API_KEYS or VO_API_KEY_FILE is empty")
    password = environ.get("VO_CONSOLE_PASSWORD") or _generated(
        state_dir / "console_password", "console password"
    )
    gateways = tuple(k.strip() for k in environ.get("VO_GATEWAY_KEYS", "").split(",") if k.strip())
    return Secrets(api_keys=keys, console_password=password, gateway_keys=gateways)


def load_host_key(state_dir: Path, environ: Mapping[str, str] | None = None) -> str:
    """The key the gateway presents to the GPU host (its own, never a client's).

    ``VO_GATEWAY_HOST_KEY``, else ``VO_GATEWAY_HOST_KEY_FILE`` (0600), else
    ``<state.dir>/gateway_host_key`` created on first start. The host must accept it: put it in
    the host's ``VO_API_KEYS`` (the ``local`` provider does this itself)."""
    environ = os.environ if environ is None else environ
    if environ.get("VO_GATEWAY_HOST_KEY"):
        return environ["VO_GATEWAY_HOST_KEY"].strip()
    if environ.get("VO_GATEWAY_HOST_KEY_FILE"):
        key = read_private_file(Path(environ["VO_GATEWAY_HOST_KEY_FILE"]))
        if not key:
            raise ConfigError("VO_GATEWAY_HOST_KEY_FILE is empty")
        return key
    return _generated(state_dir / "gateway_host_key", "gateway host key")
