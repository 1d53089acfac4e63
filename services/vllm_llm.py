"""Chat with a vLLM server, whose sleep mode is this engine's parked state.

vLLM speaks OpenAI's chat API (``OpenAIChat`` does the talking). Started with
``VLLM_SERVER_DEV_MODE=1`` in its environment and ``--enable-sleep-mode`` on its command line
(vLLM's docs, "Sleep Mode", Online Serving), the server also answers, at its root (not under
``/v1``):

    POST /sleep?level=1   the weights to host RAM, the KV cache dropped: the GPU memory is freed
    POST /wake_up         the weights back on the GPU: seconds, where a reload takes tens
    GET  /is_sleeping     {"is_sleeping": bool}

``park`` sleeps it at level 1 and checks ``/is_sleeping``; ``load`` on a parked engine wakes it,
and so does attaching to a server found asleep (one an earlier run left so). A server without
those endpoints (no dev mode, or no sleep mode) cannot park: ``park`` raises ``CannotPark`` and
the fleet unloads instead, which stops a supervised server and leaves a remote one as it is.
Supervised, the adapter runs ``vllm serve MODEL --enable-sleep-mode`` with the dev-mode variable
set; a supervised server that restarts while parked is put back to sleep. The dev endpoints must
not be reachable by clients: keep the port on loopback or firewalled, as every engine port.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from services.base import EngineMemory, EngineState, LoadReport, ParkReport
from services.errors import CannotPark, EngineError, EngineNotLoaded
from services.openai_base import OpenAIOptions
from services.openai_llm import OpenAIChat
from services.process.supervisor import ProcessState
from services.server_errors import from_status, translate
from services.server_options import ServerOptions

log = logging.getLogger(__name__)

SLEEP_HINT = "start vLLM with VLLM_SERVER_DEV_MODE=1 and --enable-sleep-mode"


class VllmOptions(OpenAIOptions):
    url: str = "http://127.0.0.1:8000/v1"
    binary: str = "vllm"  # the ``vllm`` program to supervise (a path into its own venv)
    serve_args: tuple[str, ...] = ()  # more ``vllm serve`` flags: --gpu-memory-utilization 0.4


class VllmChat(OpenAIChat):
    Options: ClassVar[type[ServerOptions]] = VllmOptions
    options: VllmOptions
    install_hint = (
        "install vLLM (pip install vllm, in a venv of its own) and set options.binary to its "
        "`vllm`; or set options.supervise = false to use a vLLM server you run yourself"
    )

    def default_command(self) -> tuple[str, ...]:
        parts = urlsplit(self.base_url)
        host, port = parts.hostname or "127.0.0.1", str(parts.port or 8000)
        command = (self.options.binary, "serve", self.spec.model, "--host", host, "--port", port)
        named = ("--served-model-name", self.model_name, "--enable-sleep-mode")
        return (*command, *named, *self.options.serve_args)

    def default_env(self) -> dict[str, str]:
        return {"VLLM_SERVER_DEV_MODE": "1"}  # vLLM serves /sleep and /wake_up only then

    @property
    def root_url(self) -> str:
        """The server's root, where the sleep endpoints are (``url`` ends in ``/v1``)."""
        return self.base_url.removesuffix("/v1")

    async def _attach(self) -> None:
        await super()._attach()
        try:
            asleep = await self._sleeping()
        except EngineError:
            return  # no sleep endpoints: such a server is never asleep
        if asleep:
            await self._call("POST", "/wake_up")

    async def load(self) -> LoadReport:
        parked = self._state is EngineState.PARKED
        report = await super().load()
        return replace(report, resumed=True) if parked and report.seconds > 0 else report

    async def park(self) -> ParkReport:
        """Sleep at level 1 (``services.base``: parked); ``CannotPark`` when the server will not."""
        async with self._lock:
            if self._state is EngineState.PARKED:
                return ParkReport(
                    seconds=0.0, ram_kept_bytes=0, ram_delta_bytes=0, vram_freed_bytes=0
                )
            if self.state is not EngineState.LOADED:
                raise EngineNotLoaded(f"engine is {self.state}: nothing to park", engine=self.name)
            ram_before, vram_before = self._measure()
            started = time.perf_counter()
            await self._sleep()
            seconds = time.perf_counter() - started
            self._state = EngineState.PARKED
            ram, vram = self._measure()
            freed = None if vram is None or vram_before is None else vram_before - vram
            log.info("%s asleep (level 1) in %.2fs", self.name, seconds)
            return ParkReport(
                seconds=seconds,
                ram_kept_bytes=ram or 0,  # the server's RSS, the parked weights in it
                ram_delta_bytes=(ram or 0) - (ram_before or 0),
                vram_freed_bytes=freed,
            )

    async def _sleep(self) -> None:
        try:
            await self._call("POST", "/sleep", params={"level": "1"})
            asleep = await self._sleeping()
        except EngineError as exc:
            raise CannotPark(
                f"vLLM did not sleep ({exc.message}): {SLEEP_HINT}", engine=self.name
            ) from exc
        if not asleep:
            raise CannotPark("POST /sleep answered, but /is_sleeping says false", engine=self.name)

    async def _sleeping(self) -> bool:
        answer = (await self._call("GET", "/is_sleeping")).json()
        return isinstance(answer, dict) and answer.get("is_sleeping") is True

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        what = f"{method} {path}"
        try:
            response = await self.client().request(
                method, f"{self.root_url}{path}", headers=self.headers(), **kwargs
            )
        except httpx.HTTPError as exc:
            raise translate(exc, engine=self.name, what=what) from exc
        if response.status_code >= 400:
            raise from_status(response.status_code, response.text, engine=self.name, what=what)
        return response

    def memory(self) -> EngineMemory:
        memory = super().memory()
        if self._state is not EngineState.PARKED:
            return memory
        return replace(memory, parked_ram_bytes=self._measure()[0])

    def _on_process_state(self, state: ProcessState) -> None:
        super()._on_process_state(state)
        process = self._process
        restarted = process is not None and process.starts != self._generation
        if state is ProcessState.READY and self._state is EngineState.PARKED and restarted:
            self._tasks.spawn("repark", self._repark())

    async def _repark(self) -> None:
        """The server came back from a crash awake, holding the GPU: put it back to sleep."""
        async with self._lock:
            process = self._process
            if process is None or self._state is not EngineState.PARKED:
                return
            if process.state is not ProcessState.READY or process.starts == self._generation:
                return
            try:
                await self._until_ready()
                await self._sleep()
            except EngineError as exc:  # still parked to us: the next load finds it awake
                log.warning("%s: back after a restart, but not asleep again: %s", self.name, exc)
            else:
                self._generation = process.starts
                log.info("%s: asleep again after the server restarted", self.name)
        for listener in list(self.state_listeners):
            try:
                listener(self.state)
            except Exception:  # a listener's bug must not stop the engine
                log.exception("%s: state listener failed", self.name)
