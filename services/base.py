"""The contract every engine adapter keeps, stated once.

An engine is one model runtime with one role. Its lifecycle, whatever the runtime:

    state      load()                 unload()             health()   role calls
    ---------  ---------------------  -------------------  ---------  ----------------
    unloaded   -> loading -> loaded   no-op                reports    EngineNotLoaded
    loading    waits for that load    waits, then unloads  reports    EngineNotLoaded
    loaded     no-op                  -> unloading ->      reports    served
                                         unloaded
    parked     resumes -> loaded      as when loaded       reports    EngineNotLoaded
    unloading  waits, then loads      waits                reports    EngineNotLoaded
    failed     retries the load       -> unloaded          reports    EngineNotLoaded
    missing    raises ModelMissing    no-op                reports    EngineNotLoaded

``missing`` means the weights are not on disk; it clears when they appear. Nothing here is
terminal: the orchestrator decides whether to retry, download or give up. ``parked``
(``Parkable`` engines: ``park()`` from loaded; a no-op when parked) keeps the weights in host
RAM and gives the device memory back; ``load()`` copies them back, reading no file. An engine
without that state raises ``CannotPark`` and the fleet unloads it instead. On a CPU the weights
are in host RAM already: parking saves the next load's time, not memory.

Each role adds its calls: ``SpeechRecognizer`` (asr), ``ChatModel`` (llm), ``SpeechSynthesizer``
(tts), ``VoiceActivityDetector`` (vad) and ``DuplexModel`` (duplex, with the types of a
conversation). Everything above the fleet reaches engines through these, never an adapter.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from services.model_ref import ModelArtifact as ModelArtifact  # re-exported: engines name it here


class Role(StrEnum):
    ASR = "asr"
    LLM = "llm"
    TTS = "tts"
    DUPLEX = "duplex"
    VAD = "vad"
    # the GPU sizing seed's other two roles: homework photos, and replies in another language
    VLM = "vlm"
    TRANSLATION = "translation"


class Runtime(StrEnum):
    IN_PROCESS = "in-process"
    MANAGED = "managed"
    REMOTE = "remote"


class EngineState(StrEnum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    LOADED = "loaded"
    PARKED = "parked"  # weights in host RAM, device memory released; not serving
    UNLOADING = "unloading"
    FAILED = "failed"
    MISSING = "missing"


@dataclass(frozen=True)
class EngineSpec:
    """What the orchestrator tells an adapter: which model, where, and engine-specific options."""

    name: str
    role: Role
    model: str
    models_dir: Path
    device: str = "cpu"
    compute_type: str = "default"
    options: dict[str, Any] = field(default_factory=dict)
    estimated_vram_bytes: int | None = None
    estimated_ram_bytes: int | None = None
    # Sessions at once the VRAM plan budgeted this engine for (the catalog entry's ``sessions``):
    # a server that queues requests should be told to serve this many in parallel.
    sessions: int = 1

    @property
    def device_kind(self) -> str:
        """``cpu`` or ``cuda``, without the GPU index (what ``device=`` arguments that take the
        index apart want, e.g. CTranslate2's ``device`` and ``device_index``)."""
        return self.device.partition(":")[0]

    @property
    def device_index(self) -> int | None:
        """The GPU of ``cuda:N`` (NVML's numbering, PCI bus order); None for cpu or bare cuda."""
        kind, _, index = self.device.partition(":")
        return int(index) if kind == "cuda" and index else None


@dataclass(frozen=True)
class Concurrency:
    """How many requests an engine serves at once: the sessions the VRAM plan budgeted for, and
    what the server was seen to run with (None: not known, e.g. a server someone else runs)."""

    planned: int
    serving: int | None
    detail: str = ""


@dataclass(frozen=True)
class EngineMemory:
    """Estimated and measured footprint; measured values are None until a load was measured."""

    device: str
    estimated_vram_bytes: int | None
    estimated_ram_bytes: int | None
    measured_vram_bytes: int | None
    measured_ram_bytes: int | None
    parked_ram_bytes: int | None = None  # host RAM the weights hold while parked


@dataclass(frozen=True)
class ProcessView:
    """A server engine's process as health and the console show it (no supervisor types)."""

    state: str
    detail: str
    pid: int | None
    port: int | None
    starts: int
    exit_code: int | None
    seconds_in_state: float
    last_lines: tuple[str, ...]


@dataclass(frozen=True)
class LoadReport:
    seconds: float
    ram_delta_bytes: int
    vram_delta_bytes: int | None
    resumed: bool = False  # from the parked state: copied back from host RAM, no files read


@dataclass(frozen=True)
class UnloadReport:
    seconds: float
    ram_freed_bytes: int
    vram_freed_bytes: int | None


@dataclass(frozen=True)
class ParkReport:
    seconds: float
    ram_kept_bytes: int  # host RAM the parked weights hold (on a CPU: what the load took)
    ram_delta_bytes: int  # RSS growth: the weights copied off the device
    vram_freed_bytes: int | None


@dataclass(frozen=True)
class EngineHealth:
    state: EngineState
    detail: str = ""
    hint: str = ""


@dataclass(frozen=True)
class Segment:
    """One piece of a transcript, times in seconds from the start of the audio."""

    start: float
    end: float
    text: str
    no_speech_prob: float = 0.0
    language: str | None = None  # the audio's language, as given or as the engine detected it


@dataclass(frozen=True)
class AudioChunk:
    """Mono PCM16 little-endian audio."""

    pcm16: bytes
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.pcm16) / 2 / self.sample_rate


@runtime_checkable
class Engine(Protocol):
    """Lifecycle every adapter implements; see the module docstring for the state table."""

    name: str
    role: Role
    runtime: Runtime

    @property
    def state(self) -> EngineState: ...

    @property
    def last_error(self) -> str | None: ...

    def artifacts(self) -> list[ModelArtifact]:
        """Hub files this engine needs; empty when the model is a local path."""
        ...

    async def load(self) -> LoadReport: ...

    async def unload(self) -> UnloadReport: ...

    async def health(self) -> EngineHealth: ...

    def memory(self) -> EngineMemory: ...


@runtime_checkable
class Parkable(Engine, Protocol):
    """An engine with a parked state (the module docstring); ``CannotPark`` says why not."""

    async def park(self) -> ParkReport: ...


@runtime_checkable
class SpeechRecognizer(Engine, Protocol):
    def transcribe(
        self, audio: npt.NDArray[np.float32], *, language: str | None = None
    ) -> AsyncGenerator[Segment, None]:
        """Stream segments of mono 16 kHz float32 audio as the engine decodes them.

        An engine that can also translate speech into English text (Whisper's ``translate``
        task) sets ``translates = True`` and takes ``task="translate"``."""
        ...


@dataclass
class ChatUsage:
    """What one reply cost, filled in by an engine that counts (``reports_usage``): the API
    reports it as OpenAI's ``usage`` and ``finish_reason``."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: Literal["stop", "length"] = "stop"  # "length": max_new_tokens was reached

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@runtime_checkable
class ChatModel(Engine, Protocol):
    def chat(
        self, messages: list[dict[str, str]], *, options: dict[str, Any] | None = None
    ) -> AsyncGenerator[str, None]:
        """Stream the reply's text deltas; closing the iterator stops generation.

        ``options``: ``max_new_tokens``, ``temperature``, ``top_p``, ``seed``. An engine that
        counts tokens sets ``reports_usage = True`` and takes ``usage: ChatUsage``, which it
        fills by the time the stream ends."""
        ...


@runtime_checkable
class SpeechSynthesizer(Engine, Protocol):
    def synthesize(
        self, text: str, *, voice: str | None = None
    ) -> AsyncGenerator[AudioChunk, None]:
        """Stream audio, one chunk per sentence, as soon as each is synthesised.

        An engine that can change its pace itself sets ``native_speed = True`` and takes a
        ``speed`` keyword (OpenAI's 0.25-4.0, 1 = normal); for the others the API changes
        the pace of what they produce."""
        ...


@runtime_checkable
class ProcessBacked(Engine, Protocol):
    """An engine that is a separate server process (``Runtime.MANAGED``)."""

    async def stop_process(self) -> UnloadReport:
        """Unload, then stop the server process too (DORMANT); a later load starts it again."""
        ...

    def process_view(self, lines: int = 20) -> ProcessView | None:
        """The process's state and last output lines; None until the process exists."""
        ...

    @property
    def state_listeners(self) -> list[Callable[[EngineState], object]]:
        """Told the engine's state when it changes on its own (a re-attach after a restart)."""
        ...


@runtime_checkable
class ServesConcurrently(Engine, Protocol):
    """An engine whose server queues requests beyond a number it is configured with."""

    def concurrency(self) -> Concurrency:
        """Planned and observed parallelism, for health; never blocks or calls the server."""
        ...


class VadStream(Protocol):
    """Speech probability frame by frame for one audio stream; the stream keeps the model's
    state between frames, so each audio stream needs its own."""

    def probability(self, frame: npt.NDArray[np.float32]) -> float:
        """Blocking but short (well under a millisecond): the chance that one frame of
        ``frame_samples`` samples is speech. A frame of another size is InvalidInput."""
        ...


@runtime_checkable
class VoiceActivityDetector(Engine, Protocol):
    """The VAD role. The model fixes its frame size and rate, so they are part of the engine:
    callers resample to ``sample_rate`` and cut ``frame_samples``-sample frames of mono float32."""

    @property
    def sample_rate(self) -> int: ...

    @property
    def frame_samples(self) -> int: ...

    def stream(self) -> VadStream:
        """A new stream (its own state); the engine's model is shared between streams."""
        ...


# -- the duplex role ------------------------------------------------------------------------

Pcm = npt.NDArray[np.float32]  # mono float32, 24 kHz for the duplex role


@dataclass(frozen=True)
class Persona:
    """Who a duplex model plays: a system prompt and one of the engine's voices."""

    text_prompt: str
    voice_prompt: str

    def query(self) -> dict[str, str]:
        """The persona as request parameters (never a ``seed``: PersonaPlex drops the session)."""
        return {"text_prompt": self.text_prompt, "voice_prompt": self.voice_prompt}


@dataclass(frozen=True)
class AudioOut:
    """Decoded model audio, mono float32 at 24 kHz (normally one 80 ms frame), and the engine's
    Ogg Opus pages it came in (b"" if none), for a front-end to pass on instead of encoding."""

    pcm: Pcm
    ogg: bytes = b""


@dataclass(frozen=True)
class TextOut:
    """A piece of the model's own words, as the engine sends it (e.g. a SentencePiece piece)."""

    text: str


Output = AudioOut | TextOut


class DuplexConnection(Protocol):
    """One running conversation with a duplex model, after its handshake.

    The model advances only as audio arrives: the caller streams 80 ms frames continuously
    (silence when muted) and gets one frame of output back for each. Once the conversation has
    ended, ``send_frame`` and ``receive`` raise an EngineCallError."""

    async def send_frame(self, pcm: Pcm) -> None:
        """Send audio (normally one 80 ms frame)."""
        ...

    async def receive(self) -> Output:
        """The next audio or text from the model."""
        ...

    async def drain_tail(self) -> None:
        """Wait (briefly) until the audio sent so far has been answered."""
        ...

    async def close(self) -> None:
        """End the conversation; safe to call twice."""
        ...


@runtime_checkable
class DuplexModel(Engine, Protocol):
    """The duplex role: full-duplex conversations, one ``open_session`` each."""

    def persona(self, text_prompt: str | None, voice_prompt: str | None) -> Persona:
        """Check a persona against this engine's voices (InvalidInput when it does not fit)."""
        ...

    async def open_session(self, persona: Persona) -> DuplexConnection:
        """Start a conversation; returns after the engine's handshake."""
        ...
