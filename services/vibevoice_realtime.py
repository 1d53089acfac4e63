"""VibeVoice-Realtime-0.5B through Microsoft's own real-time demo server, supervised.

The server is the demo of a VibeVoice checkout, run from a virtual environment of its own
(``python -m orchestrator install vibevoice`` makes it: the package pins transformers 4.51.3):
``python CHECKOUT/demo/vibevoice_realtime_demo.py --model_path MODEL --port P --device D``.
It loads the model and the voice presets (``demo/voices/streaming_model/*.pt``) before it
listens, on every interface (no ``--host``: firewall the port). Ready means ``GET /config``
answers with its voices; there is no unload API, so unloading stops the process. Speech streams
over its WebSocket (``services.vibevoice_stream``): each chunk is handed on as it arrives, and
closing the stream closes the socket, which stops the generation.

The server takes one stream at a time (a second gets ``backend_busy``): the engine sends one at
a time and queues the rest, and retries a busy answer (another client) for ``busy_wait_s``.
The text rides in the URL, so a long text goes as several streams, cut between sentences.
A voice is a preset name (``en-Emma_woman``) or its short name (``Emma``); OpenAI's voice names
(``alloy``...), which Realtime clients send, mean the configured voice; any other is refused,
where the server would speak it silently in its default voice.

Before starting it, each piece it needs is checked and a missing one is reported as the
``missing`` state with what to do:

    piece      checked                                              hint
    ---------  ---------------------------------------------------  ------------------------
    venv       ``options.python`` exists                            install vibevoice
    checkout   the demo script in ``options.source``                clone, install vibevoice
    voices     presets in the checkout, the configured voice among  the checkout, options.voice
    weights    a local model folder: its config; offline: the        install vibevoice --weights
               model and its tokenizer in the hub cache
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path
from typing import Annotated

import aiohttp
import httpx
from pydantic import Field

from services.base import AudioChunk, EngineHealth, EngineSpec, EngineState, Role
from services.errors import EngineError, InvalidInput, ModelMissing
from services.hub_cache import cached_file, hub_paths
from services.managed import ServerEngine
from services.process.probes import HttpProbe, Probe
from services.process.supervisor import Supervisor
from services.server_errors import ServerBusy, translate
from services.server_options import Seconds, ServerOptions
from services.vibevoice_stream import CONFIG_PATH, SAMPLE_RATE, split_text, stream_pcm, stream_url

HOME = Path("~/.local/share/voice-orchestrator/vibevoice")
DEMO = Path("demo") / "vibevoice_realtime_demo.py"
APP = Path("demo") / "web" / "app.py"
VOICES = Path("demo") / "voices" / "streaming_model"
MODEL_FILES = ("config.json", "preprocessor_config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
DEFAULT_TOKENIZER = "Qwen/Qwen2.5-1.5B"  # the processor's own fallback when its config names none
OPENAI_VOICES = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer"}
    | {"verse", "marin", "cedar"}
)
INSTALL = "run `./start.sh install vibevoice --source PATH` (PATH: a microsoft/VibeVoice checkout)"


class VibeVoiceRealtimeOptions(ServerOptions):
    url: str = "http://127.0.0.1:8880"
    supervise: bool = True
    home: Path = HOME  # holds venv/ and the VibeVoice/ checkout unless python / source differ
    python: Path | None = None  # the environment's interpreter (default: home/venv/bin/python)
    source: Path | None = None  # the microsoft/VibeVoice checkout (default: home/VibeVoice)
    voice: str | None = None  # a preset or its short name (None: the server's default)
    cfg_scale: Annotated[float, Field(gt=0)] | None = None  # server default 1.5
    inference_steps: Annotated[int, Field(ge=1)] | None = None  # server default 5
    hf_home: Path | None = None  # HF_HOME for the server (its hub cache is HF_HOME/hub)
    offline: bool | None = None  # None: follow HF_HUB_OFFLINE of our own environment
    extra_args: tuple[str, ...] = ()
    ready_timeout_s: Seconds = 300.0  # imports, then 10-30 s of model load before it listens
    health_timeout_s: Seconds = 5.0
    busy_wait_s: Annotated[float, Field(ge=0)] = 5.0  # retry another client's busy this long
    close_timeout_s: Seconds = 2.0
    max_url_bytes: Annotated[int, Field(ge=512, le=8000)] = 6000  # longer texts are cut


class VibeVoiceRealtime(ServerEngine):
    role = Role.TTS
    Options = VibeVoiceRealtimeOptions
    options: VibeVoiceRealtimeOptions
    native_speed = False  # the server has no pace: the API resamples
    install_hint = INSTALL

    def __init__(self, spec: EngineSpec, *, supervisor: Supervisor | None = None) -> None:
        super().__init__(spec, supervisor=supervisor)
        self.voices: tuple[str, ...] = ()  # the presets the server offers, read at load
        self.default_voice: str | None = None
        self._turn = asyncio.Lock()  # our one stream at the server (a second would be busy)

    # -- where things are --------------------------------------------------------------------

    @property
    def python(self) -> Path:
        return (self.options.python or self.options.home / "venv" / "bin" / "python").expanduser()

    @property
    def checkout(self) -> Path:
        return (self.options.source or self.options.home / "VibeVoice").expanduser()

    @property
    def offline(self) -> bool:
        if self.options.offline is not None:
            return self.options.offline
        return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")

    def hub_cache(self) -> Path:
        return hub_paths({**os.environ, **self.process_spec().env}).cache

    # -- the server --------------------------------------------------------------------------

    def default_command(self) -> tuple[str, ...]:
        port = httpx.URL(self.base_url).port or 8880
        command = [str(self.python), str(self.checkout / DEMO), "--model_path", self.spec.model]
        command += ["--port", str(port), "--device", self.spec.device]
        return (*command, *self.options.extra_args)

    def default_env(self) -> dict[str, str]:
        env = {"PYTHONUNBUFFERED": "1"}  # its prints reach the process log as they happen
        if self.options.hf_home is not None:
            env["HF_HOME"] = str(self.options.hf_home.expanduser())
        if self.offline:
            env["HF_HUB_OFFLINE"] = "1"
        return env

    def readiness_probe(self) -> Probe:
        return HttpProbe(CONFIG_PATH)  # answers once the model and the presets are loaded

    async def _probe(self) -> str | None:
        try:
            await self._read_config(self.options.health_timeout_s)
        except EngineError as exc:
            return str(exc)
        return None

    async def _attach(self) -> None:
        self.voices, self.default_voice = await self._read_config(self.options.timeout_s)
        wanted = self.options.voice
        if wanted is not None and self._match(wanted) is None:
            raise ModelMissing(
                f"the server has no voice {wanted!r}; it offers {', '.join(self.voices)}",
                engine=self.name,
                hint="set options.voice to one of them",
            )

    async def _read_config(self, timeout_s: float) -> tuple[tuple[str, ...], str | None]:
        url = f"{self.base_url}{CONFIG_PATH}"
        try:
            response = await self.client().get(url, timeout=timeout_s)
            response.raise_for_status()
            body = response.json()
        except httpx.HTTPError as exc:
            raise translate(exc, engine=self.name, what=f"GET {url}") from exc
        except ValueError as exc:
            raise translate(exc, engine=self.name, what=f"GET {url}: not JSON") from exc
        voices = body.get("voices") if isinstance(body, dict) else None
        if not isinstance(voices, list) or not all(isinstance(v, str) for v in voices):
            raise translate(ValueError(str(body)[:200]), engine=self.name, what=f"GET {url}")
        default = body.get("default_voice")
        return tuple(voices), default if isinstance(default, str) else None

    async def _bring_up(self) -> None:
        if self._checks():
            piece = await asyncio.to_thread(self.missing_piece)
            if piece is not None:
                raise ModelMissing(piece[0], engine=self.name, hint=piece[1])
        await super()._bring_up()

    async def health(self) -> EngineHealth:
        """``missing`` with its hint while a piece is missing, even before the first load."""
        if self._state is EngineState.MISSING:
            return EngineHealth(EngineState.MISSING, self._last_error or "", self._hint)
        if self._state is EngineState.UNLOADED and self._process is None and self._checks():
            piece = await asyncio.to_thread(self.missing_piece)
            if piece is not None:
                return EngineHealth(EngineState.MISSING, *piece)
        return await super().health()

    def _checks(self) -> bool:
        """Pieces are ours to check when we run the server with our own command line."""
        return self.options.supervise and not self.options.command

    def missing_piece(self) -> tuple[str, str] | None:
        """(what is missing, what to do) for the first piece the server lacks, or None
        (blocking: file system checks)."""
        if not self.python.is_file():
            return f"the VibeVoice environment is missing ({self.python} not found)", INSTALL
        if not (self.checkout / DEMO).is_file() or not (self.checkout / APP).is_file():
            return (
                f"no VibeVoice checkout at {self.checkout} ({DEMO} not found)",
                f"{INSTALL}, or set options.source to the checkout",
            )
        presets = sorted(p.stem for p in (self.checkout / VOICES).rglob("*.pt"))
        if not presets:
            return f"no voice presets in {self.checkout / VOICES}", "use a complete checkout"
        wanted = self.options.voice
        if wanted is not None and _match(wanted, presets) is None:
            return f"no voice {wanted!r} in {self.checkout / VOICES}", "set options.voice"
        return self._missing_weights()

    def _missing_weights(self) -> tuple[str, str] | None:
        model = Path(self.spec.model).expanduser()
        if model.is_absolute() or self.spec.model.startswith("."):
            if not (model / "config.json").is_file():
                return f"the model folder {model} has no config.json", "set the engine's model"
            return None
        if not self.offline:
            return None  # the server fetches what it lacks (a public repository)
        cache = self.hub_cache()
        lacking = [n for n in MODEL_FILES if cached_file(self.spec.model, n, cache) is None]
        config = cached_file(self.spec.model, "config.json", cache)
        if config is not None and not any(config.parent.glob("*.safetensors")):
            lacking.append("*.safetensors")
        tokenizer = tokenizer_repo(cached_file(self.spec.model, "preprocessor_config.json", cache))
        lacking += [
            f"{tokenizer}/{n}" for n in TOKENIZER_FILES if cached_file(tokenizer, n, cache) is None
        ]
        if not lacking:
            return None
        return (
            f"offline (HF_HUB_OFFLINE=1) and the cache {cache} lacks {', '.join(lacking)} "
            f"of {self.spec.model}",
            "run `./start.sh install vibevoice --weights` where the hub is reachable, "
            "then copy the cache here",
        )

    # -- the role call -----------------------------------------------------------------------

    def voice_key(self, voice: str | None) -> str:
        """The preset to ask for: ``voice``, the configured one, or the server's default."""
        if voice is not None and voice.lower() not in OPENAI_VOICES:
            found = self._match(voice)
            if found is None:
                raise InvalidInput(
                    f"the server has no voice {voice!r}; it offers {', '.join(self.voices)}",
                    engine=self.name,
                )
            return found
        configured = self.options.voice
        found = self._match(configured) if configured is not None else None
        return found or self.default_voice or (self.voices[0] if self.voices else "")

    def _match(self, voice: str) -> str | None:
        return _match(voice, self.voices)

    async def synthesize(
        self, text: str, *, voice: str | None = None
    ) -> AsyncGenerator[AudioChunk, None]:
        """Stream the server's audio, each chunk as it arrives (24 kHz)."""
        self._require_loaded()
        if not text.strip():
            raise InvalidInput("text is empty", engine=self.name)
        key = self.voice_key(voice)
        params: dict[str, object] = {}
        if self.options.cfg_scale is not None:
            params["cfg"] = self.options.cfg_scale
        if self.options.inference_steps is not None:
            params["steps"] = self.options.inference_steps

        def fits(piece: str) -> bool:
            return len(stream_url(self.base_url, piece, key, params)) <= self.options.max_url_bytes

        local = httpx.URL(self.base_url).host in ("127.0.0.1", "localhost", "::1")
        async with aiohttp.ClientSession(trust_env=not local) as http:
            for piece in split_text(text, fits):
                url = stream_url(self.base_url, piece, key, params)
                async with aclosing(self._one_stream(http, url)) as chunks:
                    async for pcm in chunks:
                        yield AudioChunk(pcm, SAMPLE_RATE)

    async def _one_stream(
        self, http: aiohttp.ClientSession, url: str
    ) -> AsyncGenerator[bytes, None]:
        """One stream, ours alone at the server; another client's busy is retried a while."""
        delay, waited = 0.05, 0.0
        async with self._turn:
            while True:
                frames = stream_pcm(
                    http,
                    url,
                    engine=self.name,
                    receive_timeout_s=self.options.timeout_s,
                    close_timeout_s=self.options.close_timeout_s,
                )
                try:
                    async with aclosing(frames):
                        async for pcm in frames:
                            yield pcm
                    return
                except ServerBusy:  # comes before any audio: trying again repeats nothing
                    if waited >= self.options.busy_wait_s:
                        raise
                await asyncio.sleep(delay)
                waited += delay
                delay = min(delay * 2, 1.0)


def _match(voice: str, presets: tuple[str, ...] | list[str]) -> str | None:
    """A preset by its name or its short name (``Emma`` for ``en-Emma_woman``), any case."""
    lowered = voice.lower()
    for preset in presets:
        if preset.lower() == lowered:
            return preset
    short = [p for p in presets if p.split("-", 1)[-1].rsplit("_", 1)[0].lower() == lowered]
    return short[0] if len(short) == 1 else None


def tokenizer_repo(preprocessor_config: Path | None) -> str:
    """The hub repository the server's processor loads its text tokenizer from."""
    if preprocessor_config is not None:
        try:
            body = json.loads(preprocessor_config.read_text())
            named = body.get("language_model_pretrained_name")
        except (OSError, ValueError, AttributeError):
            named = None
        if isinstance(named, str) and named:
            return named
    return DEFAULT_TOKENIZER
