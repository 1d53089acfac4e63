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
    "openai-asr": Role.ASR,
    "whisper-cpp": Role.ASR,
    "openai-tts": Role.TTS,
    "vibevoice": Role.TTS,  # the community OpenAI-style wrapper
    "vibevoice-realtime": Role.TTS,  # Microsoft's own real-time demo server (WebSocket)
    "personaplex": Role.DUPLEX,
}
