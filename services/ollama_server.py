"""One supervised server for several engines: Ollama serves many models from one process.

Where two engines name the same address (the LLM and the VLM, both Ollama), the first to load
starts the server under the shared supervisor and the other joins that process instead of
starting a second one on the same port; each hears its state and re-attaches its own model
after a restart. Each loads and unloads only its own model through the server's API; stopping
the process (DORMANT, or a move to another GPU) stops it for both.
"""

from __future__ import annotations

import logging

from services.base import EngineState, UnloadReport
from services.managed import ServerEngine
from services.process.managed_process import ManagedProcess

log = logging.getLogger(__name__)


class SharedServer(ServerEngine):
    """A server engine whose process other engines of the same address may share."""

    @property
    def process(self) -> ManagedProcess | None:
        """The supervised server; one already handed out for this address (another
        engine's: the LLM and the VLM on one Ollama) is joined, not started twice."""
        supervisor = self._supervisor
        if self._process is None and self.options.supervise and supervisor is not None:
            spec = self.process_spec()
            shared = supervisor.serving(spec.host, spec.port) if spec.port else None
            if shared is not None and shared.spec.name != spec.name:
                log.info("%s: shares the server of %s", self.name, shared.spec.name)
                self._process = shared
                shared.listeners.append(self._on_process_state)
        return super().process

    def _shared_with_another(self) -> bool:
        """Another Ollama engine serves its model from this engine's server process."""
        process = self._process
        listeners = process.listeners if process is not None else []
        owners = {getattr(listener, "__self__", None) for listener in listeners}
        return any(isinstance(o, SharedServer) and o is not self for o in owners)

    async def unload(self) -> UnloadReport:
        """As every server engine's, but a failed engine leaves a server another engine
        shares running (its own model is not loaded: there is nothing of it to free)."""
        if self._state in (EngineState.FAILED, EngineState.MISSING) and self._shared_with_another():
            async with self._lock:
                self._state = EngineState.UNLOADED
            return UnloadReport(seconds=0.0, ram_freed_bytes=0, vram_freed_bytes=0)
        return await super().unload()
