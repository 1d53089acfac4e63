"""The adapter names a configuration may use and the role each serves.

A table apart from ``services.registry`` so that validating a configuration does not import the
adapters (and what they import): the gateway reads the same TOML on a small VM that has no engine
code to load. ``services.registry`` maps each of these names to its adapter class.
"""

from __future__ import annotations

from services.base import Role

ADAPTER_ROLES: dict[str, Role] = {
    "faster-whisper": Role.ASR,
    "piper": Role.TTS,
    "silero-vad": Role.VAD,
    "transformers": Role.LLM,
    # separate servers: supervised (Runtime.MANAGED) or already running (Runtime.REMOTE)
    "ollama": Role.LLM,
    "openai-llm": Role.LLM,
    "vllm": Role.LLM,
    "openai-asr": Role.ASR,
    "whisper-cpp": Role.ASR,
    "openai-tts": Role.TTS,
    "vibevoice": Role.TTS,  # the community OpenAI-style wrapper
    "vibevoice-realtime": Role.TTS,  # Microsoft's own real-time demo server (WebSocket)
    "personaplex": Role.DUPLEX,
    "ctranslate2": Role.TRANSLATION,  # NLLB-200, M2M-100 or Marian, converted
}

# Adapters with a parked state (weights kept in host RAM, resumed without reading files); the
# others are unloaded where a state parks their role. A vllm server parks only when it was
# started with sleep mode (the supervised one is). ``services.registry`` checks this against
# the adapter classes.
PARKING_ADAPTERS: frozenset[str] = frozenset(
    {"faster-whisper", "transformers", "vllm", "ctranslate2"}
)

# Adapters that serve a second role with another engine class (``services.registry`` maps each
# pair to it): the same runtime, here with images. A configuration names the pair as
# ``adapter`` and ``role``.
MORE_ROLES: dict[tuple[str, Role], str] = {
    ("ollama", Role.VLM): "a vision model served by Ollama (qwen2.5vl, llava, minicpm-v...)",
    ("transformers", Role.VLM): "a vision-language model run in process by transformers",
}


def serves(adapter: str, role: Role) -> bool:
    """True when ``adapter`` has an engine class for ``role`` (its own, or one of MORE_ROLES)."""
    return ADAPTER_ROLES.get(adapter) is role or (adapter, role) in MORE_ROLES


def adapter_names() -> list[str]:
    """Every adapter name a configuration may use."""
    return sorted(ADAPTER_ROLES)


def roles_of(adapter: str) -> list[Role]:
    """The roles ``adapter`` serves, its main one first."""
    main = [ADAPTER_ROLES[adapter]] if adapter in ADAPTER_ROLES else []
    return main + [r for a, r in MORE_ROLES if a == adapter]
