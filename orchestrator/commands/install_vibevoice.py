"""``install vibevoice``: VibeVoice-Realtime's own environment, from a microsoft/VibeVoice checkout.

The server is the checkout's real-time demo (``demo/vibevoice_realtime_demo.py`` with its
``web/app.py`` and voice presets), which the package does not ship: the checkout is needed to
run it, so a wheel alone will not do. The steps, each printed, each failing with one clear line:

1. the checkout, from ``--source`` or the engine's ``options.source``; when ``--source`` is
   elsewhere than the engine looks (``options.home``/VibeVoice), a link is made there;
2. the environment at the engine's ``options.python`` (created with ``--python``), and
   ``pip install CHECKOUT[streamingtts]`` in it (the extra pins transformers 4.51.3; ``--pip-arg``
   passes e.g. ``--no-index --find-links DIR``);
3. the server's app must import (``demo/web/app.py``: torch, transformers, the model code);
   a note when flash-attn is missing (the server then falls back to SDPA);
4. ``--weights``: the model into the hub cache the server reads, and the text tokenizer its
   processor names (``preprocessor_config.json``), with progress. The repositories are public:
   no token is needed. Offline (``HF_HUB_OFFLINE=1`` or ``options.offline``) only the cache is
   checked.

Running it again reuses the environment and reinstalls the checkout.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.commands import CommandError
from orchestrator.commands.venvs import ensure_venv, pip_install, run_step
from orchestrator.config import AppConfig

if TYPE_CHECKING:
    from services.vibevoice_realtime import VibeVoiceRealtime

ADAPTER = "vibevoice-realtime"
CLONE = "git clone https://github.com/microsoft/VibeVoice.git"
TOKENIZER_PATTERNS = ["tokenizer*", "vocab.json", "merges.txt", "*.json"]


def run(args: argparse.Namespace, config: AppConfig) -> int:
    engine = _engine(config, args.engine)
    checkout = resolve_checkout(args.source, engine)
    print(f"source: {checkout}")
    link_checkout(engine, checkout, given=args.source is not None)
    python = engine.python
    venv = ensure_venv(python, args.python)
    print(f"installing {checkout.name}[streamingtts] into {venv}")
    pip_install(python, f"{checkout}[streamingtts]", args.pip_arg)
    check_app(python, checkout)
    print(f"ok: the server's app imports ({checkout / 'demo' / 'web' / 'app.py'})")
    if subprocess.run([str(python), "-c", "import flash_attn"], capture_output=True).returncode:
        print(
            "note: flash-attn is not installed: the server falls back to SDPA (only "
            f"flash_attention_2 is fully tested); `{python} -m pip install flash-attn "
            "--no-build-isolation` on a CUDA host"
        )
    if args.weights:
        fetch_weights(engine)
    return 0


def _engine(config: AppConfig, name: str | None) -> VibeVoiceRealtime:
    # imported here, not above: the CLI imports every command, and the gateway's VM must not
    # load the adapters to run its own
    from orchestrator.fleet.records import spec_for
    from services.registry import create_engine
    from services.vibevoice_realtime import VibeVoiceRealtime

    names = [name] if name else [config.sessions.tts]
    names += [n for n, e in config.engines.items() if e.adapter == ADAPTER]
    for candidate in names:
        engine_config = config.engines.get(candidate)
        if engine_config is not None and engine_config.adapter == ADAPTER:
            spec = spec_for(candidate, engine_config, config.models.dir)
            engine = create_engine(engine_config.adapter, spec)
            assert isinstance(engine, VibeVoiceRealtime)
            return engine
    raise CommandError(
        f"no VibeVoice engine is configured: pick a GPU profile (--profile t4-16gb), or add "
        f'[engines.tts] with adapter = "{ADAPTER}"'
    )


def resolve_checkout(given: str | None, engine: VibeVoiceRealtime) -> Path:
    """The checkout to install: ``--source``, else where the engine looks for it."""
    from services.vibevoice_realtime import APP, DEMO

    path = Path(given).expanduser() if given else engine.checkout
    if not given and not path.exists():
        raise CommandError(
            f"no source: pass --source PATH, a checkout of microsoft/VibeVoice (`{CLONE}`), "
            f"or set options.source (looked in {path})"
        )
    if path.is_file():
        raise CommandError(
            f"{path}: the package lacks the real-time demo server ({APP}) and its voices: "
            "pass a checkout of microsoft/VibeVoice"
        )
    if not path.is_dir():
        raise CommandError(f"source {path} does not exist (`{CLONE}`)")
    if not (path / "pyproject.toml").is_file() or not (path / DEMO).is_file():
        raise CommandError(f"{path}: not a VibeVoice checkout (no pyproject.toml and {DEMO})")
    return path.resolve()


def link_checkout(engine: VibeVoiceRealtime, checkout: Path, *, given: bool) -> None:
    """Make the engine find ``checkout``: a link where it looks, unless options.source says."""
    where = engine.checkout
    if not given or (where.exists() and where.resolve() == checkout):
        return
    if engine.options.source is not None:
        raise CommandError(
            f"--source {checkout} is not the engine's options.source ({where}), where the "
            "server runs from: change one of them"
        )
    if where.exists() and not where.is_symlink():
        raise CommandError(f"{where} exists and is not a link: remove it, or set options.source")
    where.parent.mkdir(parents=True, exist_ok=True)
    where.unlink(missing_ok=True)
    where.symlink_to(checkout, target_is_directory=True)
    print(f"linked {where} -> {checkout}")


def check_app(python: Path, checkout: Path) -> None:
    demo = str(checkout / "demo")
    code = f"import sys; sys.path.insert(0, {demo!r}); import web.app"
    run_step(
        [str(python), "-c", code], "importing the server's app (demo/web/app.py)", timeout_s=900
    )


def fetch_weights(engine: VibeVoiceRealtime) -> None:
    """The model and its text tokenizer into the hub cache the server reads."""
    from huggingface_hub import snapshot_download

    from services.vibevoice_realtime import tokenizer_repo

    model = engine.spec.model
    if Path(model).expanduser().is_absolute() or model.startswith("."):
        print(f"the model is a local folder ({model}): nothing to fetch")
        return
    cache, offline = engine.hub_cache(), engine.offline
    repo, patterns = model, ["*.json", "*.safetensors"]  # the model card and figures are not
    try:
        print(f"fetching {repo} into {cache}" + (" (offline: the cache only)" if offline else ""))
        folder = snapshot_download(
            repo, cache_dir=cache, allow_patterns=patterns, local_files_only=offline
        )
        repo = tokenizer_repo(Path(folder) / "preprocessor_config.json")
        print(f"fetching its text tokenizer {repo} into {cache}")
        snapshot_download(
            repo, cache_dir=cache, allow_patterns=TOKENIZER_PATTERNS, local_files_only=offline
        )
    except Exception as exc:  # the hub client raises many kinds: offline, not found, HTTP
        reason = (str(exc).strip().splitlines() or [""])[0][:160]
        where = (
            "offline, and the cache lacks it: run this where the hub is reachable, then copy "
            "the cache here"
            if offline
            else "is the hub reachable from here? (set HF_ENDPOINT for a mirror)"
        )
        problem = f"could not fetch {repo} ({type(exc).__name__}: {reason}); {where}"
        raise CommandError(problem) from exc
    print(f"weights in {cache}")
