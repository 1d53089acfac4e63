"""``install personaplex|vibevoice``: build an engine's own virtual environment, check that it runs.

PersonaPlex pins torch<2.5, aiohttp<3.11 and sphn<0.2, and VibeVoice's real-time model pins
transformers 4.51.3, so neither can share our environment. PersonaPlex's steps, each printed,
each failing with one clear line (VibeVoice's are in ``install_vibevoice``):

1. the source: a checkout of NVIDIA's personaplex repository (its ``moshi/`` folder is the
   package) or a wheel, from ``--source`` or the engine's ``options.source``;
2. ``libopus``: looked for; ``--system-deps`` installs it with apt-get where we are root;
3. the environment at the engine's ``options.python`` (created with ``--python``), and
   ``pip install SOURCE`` in it (``--pip-arg`` passes e.g. ``--no-index --find-links DIR``);
4. ``python -m moshi.server --help`` must run;
5. ``--weights``: the gated weights into the hub cache (``HF_TOKEN``), with progress, and the
   voice prompts unpacked into ``voice_prompt_dir``.

Running it again reuses the environment and reinstalls the source.
"""

from __future__ import annotations

import argparse
import ctypes.util
import os
import shutil
import sys
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.commands import CommandError, install_vibevoice
from orchestrator.commands.venvs import ensure_venv, pip_install, run_step
from orchestrator.config import AppConfig

if TYPE_CHECKING:
    from services.personaplex import PersonaPlexEngine

NAME = "install"
HELP = "install an engine's separate environment (personaplex, vibevoice)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", choices=["personaplex", "vibevoice"])
    parser.add_argument(
        "--engine",
        help="the engine to install for (default: [duplex].engine; vibevoice: [sessions].tts)",
    )
    parser.add_argument(
        "--source",
        help="personaplex: a checkout or a wheel; vibevoice: a checkout of microsoft/VibeVoice "
        "(default: options.source)",
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter for the new venv")
    parser.add_argument("--pip-arg", action="append", default=[], help="extra pip argument")
    parser.add_argument(
        "--system-deps", action="store_true", help="personaplex: apt-get libopus if missing"
    )
    parser.add_argument(
        "--weights", action="store_true", help="also fetch the weights (personaplex: and voices)"
    )


def run(args: argparse.Namespace, config: AppConfig) -> int:
    if args.target == "vibevoice":
        return install_vibevoice.run(args, config)
    engine = _engine(config, args.engine)
    source = resolve_source(args.source or engine.options.source)
    print(f"source: {source}")
    check_opus(install=args.system_deps)
    python = engine.python
    venv = ensure_venv(python, args.python)
    print(f"installing {source.name} into {venv}")
    pip_install(python, str(source), args.pip_arg)
    check_server(python, engine.options.module)
    print(f"ok: `{python} -m {engine.options.module} --help` runs")
    if args.weights:
        fetch_weights(engine)
    return 0


def _engine(config: AppConfig, name: str | None) -> PersonaPlexEngine:
    # imported here, not above: the CLI imports every command, and the gateway's VM must not
    # load the adapters to run its own
    from orchestrator.fleet.records import spec_for
    from services.personaplex import PersonaPlexEngine
    from services.registry import create_engine

    names = [name] if name else [config.duplex.engine]
    names += [n for n, e in config.engines.items() if e.adapter == "personaplex"]
    for candidate in names:
        engine_config = config.engines.get(candidate)
        if engine_config is not None and engine_config.adapter == "personaplex":
            spec = spec_for(candidate, engine_config, config.models.dir)
            engine = create_engine(engine_config.adapter, spec)
            assert isinstance(engine, PersonaPlexEngine)
            return engine
    raise CommandError(
        'no PersonaPlex engine is configured: add [engines.duplex] with adapter = "personaplex"'
    )


def resolve_source(given: str | None) -> Path:
    """The installable thing: a wheel, or the folder with the package's pyproject/setup."""
    if not given:
        raise CommandError("no source: pass --source or set options.source of the engine")
    path = Path(given).expanduser()
    if path.is_file() and path.suffix == ".whl":
        return path
    if path.is_dir():
        for folder in (path / "moshi", path):
            if (folder / "pyproject.toml").is_file() or (folder / "setup.py").is_file():
                return folder
        raise CommandError(f"{path}: not a personaplex checkout (no moshi/pyproject.toml)")
    raise CommandError(f"source {path} is neither a folder nor a .whl file")


def check_opus(*, install: bool) -> None:
    if ctypes.util.find_library("opus"):
        return
    command = ["apt-get", "install", "-y", "libopus-dev"]
    if install and shutil.which("apt-get") and os.geteuid() == 0:
        run_step(command, "installing libopus")
        return
    print(f"note: libopus not found; if the server cannot decode audio, run `{' '.join(command)}`")


def check_server(python: Path, module: str) -> None:
    run_step([str(python), "-m", module, "--help"], f"`{python} -m {module} --help`", timeout_s=300)


def fetch_weights(engine: PersonaPlexEngine) -> None:
    """The gated files into the hub cache (progress on the terminal); voices unpacked."""
    from huggingface_hub import hf_hub_download

    from services.personaplex import WEIGHT_FILES

    token = os.environ.get(engine.options.hf_token_env) or None
    cache = engine.hub_cache()
    paths: dict[str, str] = {}
    for name in WEIGHT_FILES:
        print(f"fetching {engine.hf_repo}/{name} into {cache}")
        try:
            paths[name] = hf_hub_download(engine.hf_repo, name, cache_dir=cache, token=token)
        except Exception as exc:  # the hub client raises many kinds: offline, gated, HTTP
            reason = (str(exc).strip().splitlines() or [""])[0][:160]
            raise CommandError(
                f"could not fetch {name} ({type(exc).__name__}: {reason}); set "
                f"{engine.options.hf_token_env} and accept the licence on the model page"
            ) from exc
    target = engine.voice_dir
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(paths["voices.tgz"]) as archive:
        for member in archive.getmembers():
            if member.isfile() and Path(member.name).suffix in (".pt", ".wav"):
                extracted = archive.extractfile(member)
                if extracted is not None:
                    (target / Path(member.name).name).write_bytes(extracted.read())
    print(f"voices in {target}")
