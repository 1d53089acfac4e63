"""PersonaPlex (NVIDIA PersonaPlex-7B, on Moshi): a full-duplex speech model in its own server.

The server pins old torch/aiohttp/sphn, so it runs from its own virtual environment (made by
``python -m orchestrator install personaplex``) as ``python -m moshi.server --host 127.0.0.1
--port P --static none --voice-prompt-dir DIR`` under our supervisor. It loads its weights at
start and has no unload API: ready means a plain ``GET /api/chat`` answers 400, unload means
stopping the process (SIGTERM, a short grace, SIGKILL: mid-session it can take two minutes to
exit on its own). VRAM is measured per process through NVML (``ServerEngine._measure``).

Before starting it, each piece it needs is checked and a missing one is reported as the
``missing`` state with what to do (the server itself would fail deep in its start-up, or try
to download):

    piece          checked                                         hint
    -------------  ----------------------------------------------  -------------------------
    venv           ``options.python`` exists                       install personaplex
    voices         ``voice_prompt_dir`` holds the configured files  install personaplex --weights
    weights        offline: every file in the HF cache              fill the cache online
    HF token       online: a token the server will find             set it, or go offline

The cache and the token are looked for where the server will look: its environment is ours plus
``hf_home`` (as ``HF_HOME``), ``options.env`` and the token variable, read by huggingface_hub's
rules (``hub_paths``).

The role call is ``open_session(persona)``: one conversation over the wire protocol
(``services.duplex_client``). The server holds one conversation at a time; who gets it is the
orchestrator's decision, and the engine makes sure it never has two connections open to its
server (``ConnectionSlot``): the server would queue the second one and start it with whatever
persona connected last.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Annotated

import httpx
from pydantic import Field

from services.base import EngineHealth, EngineState, Persona, Role
from services.duplex_client import ConnectionSlot, PersonaPlexConnection, connect, make_persona
from services.errors import ModelMissing
from services.hub_cache import hub_paths
from services.managed import ServerEngine
from services.process.managed_process import ProcessSpec
from services.process.probes import HttpProbe, Probe
from services.server_errors import translate
from services.server_options import Seconds, ServerOptions

HOME = Path("~/.local/share/voice-orchestrator/personaplex")
VOICES = tuple(
    [f"NATF{i}.pt" for i in range(4)]
    + [f"NATM{i}.pt" for i in range(4)]
    + [f"VARF{i}.pt" for i in range(5)]
    + [f"VARM{i}.pt" for i in range(5)]
)
MOSHI_WEIGHT = "model.safetensors"
MIMI_WEIGHT = "tokenizer-e351c8d8-checkpoint125.safetensors"
TOKENIZER = "tokenizer_spm_32k_3.model"
WEIGHT_FILES = ("config.json", MOSHI_WEIGHT, MIMI_WEIGHT, TOKENIZER, "voices.tgz")


class PersonaPlexOptions(ServerOptions):
    url: str = "http://127.0.0.1:8998"
    supervise: bool = True
    home: Path = HOME  # holds venv/ and voices/ unless python / voice_prompt_dir say otherwise
    python: Path | None = None  # the PersonaPlex venv's interpreter (default: home/venv/bin/python)
    module: str = "moshi.server"
    source: str | None = None  # for `install personaplex`: a repo checkout or a wheel
    voice_prompt_dir: Path | None = None  # default: home/voices
    voices: tuple[str, ...] = VOICES
    default_voice: str = "NATF2.pt"
    hf_repo: str | None = None  # default: the engine's model
    hf_home: Path | None = None  # HF_HOME for the server (its hub cache is HF_HOME/hub)
    offline: bool | None = None  # None: follow HF_HUB_OFFLINE of our own environment
    hf_token_env: str = "HF_TOKEN"
    moshi_weight: Path | None = None
    mimi_weight: Path | None = None
    tokenizer: Path | None = None
    cpu_offload: bool = False  # accelerate's offload: not real time
    extra_args: tuple[str, ...] = ()
    ready_timeout_s: Seconds = 900.0  # ~16 GB of weights load before it listens
    stop_grace_s: Seconds = 5.0  # mid-session it may hang ~2 min on SIGTERM: kill sooner
    handshake_timeout_s: Seconds = 30.0  # prefill takes seconds; longer means busy or stuck
    tail_s: Annotated[float, Field(ge=0)] = 1.0  # keep the socket this long for the reply's tail


@dataclass(frozen=True)
class MissingPiece:
    message: str
    hint: str


class PersonaPlexEngine(ServerEngine):
    role = Role.DUPLEX
    Options = PersonaPlexOptions
    options: PersonaPlexOptions

    # -- where things are --------------------------------------------------------------------

    @property
    def python(self) -> Path:
        return (self.options.python or self.options.home / "venv" / "bin" / "python").expanduser()

    @property
    def voice_dir(self) -> Path:
        return (self.options.voice_prompt_dir or self.options.home / "voices").expanduser()

    @property
    def hf_repo(self) -> str:
        return self.options.hf_repo or self.spec.model

    @property
    def offline(self) -> bool:
        if self.options.offline is not None:
            return self.options.offline
        return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")

    def server_env(self) -> dict[str, str]:
        """The environment the server runs with: ours plus what ``process_spec`` adds."""
        return {**os.environ, **self.process_spec().env}

    def hub_cache(self) -> Path:
        return hub_paths(self.server_env()).cache

    @cached_property
    def connection_slot(self) -> ConnectionSlot:
        """The one connection we may hold to the server (see ``services.duplex_client``)."""
        return ConnectionSlot(self.base_url)

    # -- the server --------------------------------------------------------------------------

    def default_command(self) -> tuple[str, ...]:
        options, port = self.options, self._port()
        command = [str(self.python), "-m", options.module, "--host", "127.0.0.1"]
        command += ["--port", str(port), "--static", "none"]
        command += ["--voice-prompt-dir", str(self.voice_dir), "--hf-repo", self.hf_repo]
        command += ["--device", self.spec.device_kind]  # cuda:N is its only GPU (device_env)
        for flag, path in (
            ("--moshi-weight", options.moshi_weight),
            ("--mimi-weight", options.mimi_weight),
            ("--tokenizer", options.tokenizer),
        ):
            if path is not None:
                command += [flag, str(path.expanduser())]
        if options.cpu_offload:
            command.append("--cpu-offload")
        return (*command, *options.extra_args)

    def default_env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.options.hf_home is not None:
            env["HF_HOME"] = str(self.options.hf_home.expanduser())
        if self.offline:
            env["HF_HUB_OFFLINE"] = "1"
        return env

    def process_spec(self) -> ProcessSpec:
        spec = super().process_spec()
        name = self.options.hf_token_env
        if name != "HF_TOKEN" and os.environ.get(name):  # the server reads HF_TOKEN only
            spec = replace(spec, env={**spec.env, "HF_TOKEN": os.environ[name]})
        return spec

    def readiness_probe(self) -> Probe:
        return HttpProbe("/api/chat", status=400)  # no upgrade: 400, without the model lock

    def _port(self) -> int:
        port = httpx.URL(self.base_url).port
        return port if port is not None else 8998

    async def _probe(self) -> str | None:
        try:
            response = await self.client().get(f"{self.base_url}/api/chat")
        except httpx.HTTPError as exc:
            return (
                f"PersonaPlex at {self.base_url}: {translate(exc, engine=self.name, what='probe')}"
            )
        if response.status_code != 400:
            return f"GET /api/chat answered {response.status_code}, want 400"
        return None

    async def _bring_up(self) -> None:
        if self._checks():
            piece = await asyncio.to_thread(self.missing_piece)
            if piece is not None:
                raise ModelMissing(piece.message, engine=self.name, hint=piece.hint)
        await super()._bring_up()

    async def health(self) -> EngineHealth:
        """``missing`` with its hint while a piece is missing, even before the first load."""
        if self._state is EngineState.MISSING:
            return EngineHealth(EngineState.MISSING, self._last_error or "", self._hint)
        if self._state is EngineState.UNLOADED and self._process is None and self._checks():
            piece = await asyncio.to_thread(self.missing_piece)
            if piece is not None:
                return EngineHealth(EngineState.MISSING, piece.message, piece.hint)
        return await super().health()

    def _checks(self) -> bool:
        """Pieces are ours to check when we run the server with our own command line."""
        return self.options.supervise and not self.options.command

    async def _attach(self) -> None:
        """Nothing to do: the server loaded its weights before it began to listen."""
        return None

    def missing_piece(self) -> MissingPiece | None:
        """The first thing the server lacks to start, or None (blocking: file system checks)."""
        install = "run `python -m orchestrator install personaplex`"
        if not self.python.is_file():
            return MissingPiece(
                f"the PersonaPlex environment is missing ({self.python} not found)", install
            )
        absent = [v for v in self.options.voices if not (self.voice_dir / v).is_file()]
        if absent:
            return MissingPiece(
                f"voice prompts missing in {self.voice_dir}: {', '.join(absent[:4])}"
                + (" ..." if len(absent) > 4 else ""),
                f"{install} --weights (unpacks voices.tgz), or set voice_prompt_dir",
            )
        if self.offline:
            lacking = self._uncached_files()
            if lacking:
                return MissingPiece(
                    f"offline (HF_HUB_OFFLINE=1) and {self.hf_repo} lacks {', '.join(lacking)} "
                    f"in the cache {self.hub_cache()}",
                    f"{install} --weights where the hub is reachable (HF_TOKEN set), "
                    "then copy the cache here",
                )
        else:
            paths = hub_paths(self.server_env())
            if not paths.token_set and not paths.token_file.is_file():
                return MissingPiece(
                    f"{self.options.hf_token_env} is not set and the server has no token file "
                    f"({paths.token_file}): {self.hf_repo} is a gated repository",
                    f"accept the licence on huggingface.co/{self.hf_repo} and set "
                    f"{self.options.hf_token_env} (or write the token to {paths.token_file}), "
                    "or fill the cache and set offline = true",
                )
        return None

    def _uncached_files(self) -> list[str]:
        from huggingface_hub import try_to_load_from_cache

        local = {
            MOSHI_WEIGHT: self.options.moshi_weight,
            MIMI_WEIGHT: self.options.mimi_weight,
            TOKENIZER: self.options.tokenizer,
        }
        wanted = [f for f in WEIGHT_FILES if f != "voices.tgz" and local.get(f) is None]
        cache = str(self.hub_cache())
        return [
            name
            for name in wanted
            if not isinstance(try_to_load_from_cache(self.hf_repo, name, cache_dir=cache), str)
        ]

    # -- the role call -----------------------------------------------------------------------

    def persona(self, text_prompt: str | None, voice_prompt: str | None) -> Persona:
        """A checked persona: a non-empty text prompt and one of the configured voices."""
        return make_persona(
            text_prompt, voice_prompt, self.options.voices, self.options.default_voice
        )

    async def open_session(self, persona: Persona) -> PersonaPlexConnection:
        """Start one conversation; returns after the server's handshake. While one is open,
        ``ConnectionBusy`` at once: a second would wait at the server and could start with the
        first's persona."""
        self._require_loaded()
        return await connect(
            self.base_url,
            persona,
            slot=self.connection_slot,
            name=self.name,
            handshake_timeout_s=self.options.handshake_timeout_s,
            connect_timeout_s=self.options.connect_timeout_s,
            tail_s=self.options.tail_s,
            headers=self.headers(),
        )
