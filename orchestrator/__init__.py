"""The core of voice-orchestrator: it decides what runs where and when (engines: services/)."""

__version__ = "0.1.0"
