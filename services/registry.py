"""Adapter names as written in config, mapped to the classes that implement them."""

from __future__ import annotations

from collections.abc import Callable

from services.base import Engine, EngineSpec, Role
from services.piper_tts import PiperEngine
from services.silero_vad import SileroVad
from services.transformers_llm import TransformersChat
from services.whisper_asr import WhisperEngine

EngineFactory = Callable[[EngineSpec], Engine]

ADAPTERS: dict[str, tuple[Role, EngineFactory]] = {
    "faster-whisper": (Role.ASR, WhisperEngine),
    "piper": (Role.TTS, PiperEngine),
    "silero-vad": (Role.VAD, SileroVad),
    "transformers": (Role.LLM, TransformersChat),
}


def create_engine(adapter: str, spec: EngineSpec) -> Engine:
    try:
        _role, factory = ADAPTERS[adapter]
    except KeyError:
        known = ", ".join(sorted(ADAPTERS))
        raise ValueError(f"unknown adapter {adapter!r}; known: {known}") from None
    return factory(spec)
