"""The gateway runs on a small VM without a GPU: starting it imports no engine, no torch, no
runtime and no cloud SDK but the configured provider's."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "torch",
    "faster_whisper",
    "ctranslate2",
    "transformers",
    "onnxruntime",
    "piper",
    "moshi",
    "services.registry",
    "orchestrator.app",
    "orchestrator.fleet",
    "google.cloud.compute",
    "boto3",
)


def heavy_after_importing(*modules: str) -> list[str]:
    """The heavy modules a fresh interpreter holds after importing ``modules``."""
    probe = (
        "import json, sys\n"
        f"import {', '.join(modules)}\n"
        f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    found: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return found


def test_the_gateway_app_imports_nothing_heavy() -> None:
    assert heavy_after_importing("orchestrator.gateway.app") == []


def test_the_gateway_command_imports_nothing_heavy() -> None:
    modules = ("orchestrator.cli", "orchestrator.commands.gateway", "orchestrator.gateway.serve")
    assert heavy_after_importing(*modules) == []
