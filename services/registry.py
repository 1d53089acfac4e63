"""Adapter names as written in config, mapped to the classes that implement them."""

from __future__ import annotations

from collections.abc import Callable

from services.adapter_roles import ADAPTER_ROLES, MORE_ROLES, PARKING_ADAPTERS
from services.base import Engine, EngineSpec, Role
from services.ctranslate2_mt import CTranslate2Translator
from services.managed import ServerEngine
from services.ollama_llm import OllamaChat
from services.ollama_vlm import OllamaVision
from services.openai_asr import OpenAITranscriber, WhisperCppTranscriber
from services.openai_llm import OpenAIChat
from services.openai_tts import OpenAISpeech, VibeVoiceSpeech
from services.personaplex import PersonaPlexEngine
from services.piper_tts import PiperEngine
from services.process.supervisor import Supervisor
from services.silero_vad import SileroVad
from services.transformers_llm import TransformersChat
from services.transformers_vlm import TransformersVision
from services.vibevoice_realtime import VibeVoiceRealtime
from services.vllm_llm import VllmChat
from services.whisper_asr import WhisperEngine

EngineFactory = Callable[[EngineSpec], Engine]

_FACTORIES: dict[str, EngineFactory] = {
    "faster-whisper": WhisperEngine,
    "piper": PiperEngine,
    "silero-vad": SileroVad,
    "transformers": TransformersChat,
    "ollama": OllamaChat,
    "openai-llm": OpenAIChat,
    "vllm": VllmChat,
    "openai-asr": OpenAITranscriber,
    "whisper-cpp": WhisperCppTranscriber,
    "openai-tts": OpenAISpeech,
    "vibevoice": VibeVoiceSpeech,
    "vibevoice-realtime": VibeVoiceRealtime,
    "personaplex": PersonaPlexEngine,
    "ctranslate2": CTranslate2Translator,
}
if _FACTORIES.keys() != ADAPTER_ROLES.keys():  # a name in one table and not the other
    raise ImportError(f"adapter tables differ: {sorted(_FACTORIES.keys() ^ ADAPTER_ROLES.keys())}")

# (adapter, role) -> the adapter's class for a second role (``MORE_ROLES``)
_ROLE_FACTORIES: dict[tuple[str, Role], EngineFactory] = {
    ("ollama", Role.VLM): OllamaVision,
    ("transformers", Role.VLM): TransformersVision,
}
if _ROLE_FACTORIES.keys() != MORE_ROLES.keys():
    raise ImportError(f"role tables differ: {sorted(_ROLE_FACTORIES.keys() ^ MORE_ROLES.keys())}")


def _parks(factory: EngineFactory) -> bool:
    return hasattr(factory, "park") and getattr(factory, "park_refusal", None) is None


_PARKING = {name for name, factory in _FACTORIES.items() if _parks(factory)}
if _PARKING != PARKING_ADAPTERS:
    raise ImportError(f"PARKING_ADAPTERS is wrong about: {sorted(_PARKING ^ PARKING_ADAPTERS)}")
_MIXED = {a for (a, _r), factory in _ROLE_FACTORIES.items() if _parks(factory) != (a in _PARKING)}
if _MIXED:  # the fleet decides parking by adapter name: each role's class must agree
    raise ImportError(f"adapters whose roles differ in parking: {sorted(_MIXED)}")

ADAPTERS: dict[str, tuple[Role, EngineFactory]] = {
    name: (ADAPTER_ROLES[name], factory) for name, factory in _FACTORIES.items()
}


def create_engine(adapter: str, spec: EngineSpec) -> Engine:
    """The adapter's engine for ``spec``."""
    if (adapter, spec.role) in _ROLE_FACTORIES:
        return _ROLE_FACTORIES[adapter, spec.role](spec)
    try:
        _role, factory = ADAPTERS[adapter]
    except KeyError:
        known = ", ".join(sorted(ADAPTERS))
        raise ValueError(f"unknown adapter {adapter!r}; known: {known}") from None
    return factory(spec)


def supervise(engine: Engine, supervisor: Supervisor) -> None:
    """Run a server engine's process under the orchestrator's shared supervisor (pid files,
    orphan recovery, one place to stop them all); other engines have no process."""
    if isinstance(engine, ServerEngine):
        engine.use_supervisor(supervisor)
