"""One engine server process (Ollama, VibeVoice, whisper.cpp...): started, watched, restarted.

Each managed process has one writer, its runner task, which owns its state:

    stopped --start()--> starting --probe ok--> ready
    starting/ready --exit or not ready in time--> crashed --> backoff --> starting
    starting --transient SupervisorError-------->/      \\-> failed (crash loop)
    starting --permanent SupervisorError--> failed (port taken, the process cannot run at all)
    any --stop()--> stopping --> stopped          failed --start()--> starting

Whether a failure to start is retried is the error's ``transient`` flag (``services.errors``):
an executable that is busy being written, or a system short of processes, backs off like a
crash; a missing executable or a port held by a stranger fails at once.

A child runs in its own session and process group (``services.process.child``); its stdout and
stderr go, line by line as they come, into a bounded ring and the log. Stop is SIGTERM to the
group, a grace period, then SIGKILL. Nothing is ever killed by name or by port: a port held by a
stranger is an error, and a pidfile's process is signalled only when it is provably ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import psutil

from services.base import ProcessView
from services.errors import VoiceOrchestratorError
from services.process import pidfiles
from services.process.child import Child
from services.process.probes import Probe, port_free, port_holder
from services.process.process_log import LogRing, RateLimitedLog
from services.process.restart_policy import CrashHistory, RestartPolicy

log = logging.getLogger(__name__)

LAST_LINES = 20


class ProcessState(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    CRASHED = "crashed"
    BACKOFF = "backoff"
    FAILED = "failed"


# A spawn that fails with one of these may work on the next try (the executable is being
# written, the system is short of processes or files): a crash to back off from, not a failure.
TRANSIENT_SPAWN_ERRNOS = frozenset(
    {errno.ETXTBSY, errno.EAGAIN, errno.ENOMEM, errno.EMFILE, errno.ENFILE}
)


class SupervisorError(VoiceOrchestratorError):
    """A managed process could not be brought up; ``last_lines`` is what it printed last.

    The runner restarts (with backoff, within the crash-loop limit) after a transient one and
    leaves the process ``failed`` after a permanent one.
    """

    code = "process_error"
    status = 503

    def __init__(
        self,
        name: str,
        message: str,
        last_lines: tuple[str, ...] = (),
        *,
        transient: bool | None = None,
    ) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message
        self.last_lines = last_lines
        if transient is not None:
            self.transient = transient


class PortTaken(SupervisorError):
    """The process's port is held by a process this supervisor did not start."""

    code = "port_taken"


class ProcessFailed(SupervisorError):
    """The process is ``failed`` (crash loop, unusable command) or was stopped meanwhile."""

    code = "process_failed"


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)  # added to the inherited environment
    cwd: Path | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    probe: Probe | None = None  # None: ready as soon as it runs
    ready_timeout_s: float = 60.0
    stop_grace_s: float = 10.0
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    log_lines: int = 500


@dataclass(frozen=True)
class ProcessStatus:
    """One managed process as health checks and the console see it."""

    name: str
    state: ProcessState
    detail: str
    since: float
    pid: int | None
    port: int | None
    starts: int
    exit_code: int | None
    last_lines: tuple[str, ...]

    def view(self) -> ProcessView:
        """The same, in the engine-facing shape health and the console read."""
        seconds = max(0.0, time.time() - self.since)
        fields = {k: v for k, v in vars(self).items() if k not in ("name", "since", "state")}
        return ProcessView(state=self.state.value, seconds_in_state=seconds, **fields)


class ManagedProcess:
    def __init__(
        self,
        spec: ProcessSpec,
        *,
        pid_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.log = LogRing(spec.log_lines)
        self._log_line = RateLimitedLog(log, spec.name)
        self._pid_dir = pid_dir
        self._history = CrashHistory(spec.restart, clock)
        self._state = ProcessState.STOPPED
        self._detail = "not started"
        self._since = time.time()
        self._changed = asyncio.Event()
        self._stop = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._child: Child | None = None
        self.starts = 0
        self.exit_code: int | None = None
        self.listeners: list[Callable[[ProcessState], None]] = []

    @property
    def state(self) -> ProcessState:
        return self._state

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    def status(self, lines: int = LAST_LINES) -> ProcessStatus:
        return ProcessStatus(
            name=self.spec.name,
            state=self._state,
            detail=self._detail,
            since=self._since,
            pid=self.pid,
            port=self.spec.port,
            starts=self.starts,
            exit_code=self.exit_code,
            last_lines=tuple(self.log.texts(lines)),
        )

    # -- commands ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the runner unless it runs; a ``failed`` process starts with a clean history."""
        if self._runner is not None and not self._runner.done():
            if not self._stop.is_set():
                return
            await asyncio.shield(self._runner)  # a stop is under way: let it finish first
        self._history.reset()
        self._stop.clear()
        self._runner = asyncio.create_task(self._run(), name=f"supervise:{self.spec.name}")

    async def wait_ready(self) -> None:
        """Wait for ``ready``; raise ProcessFailed on ``failed`` or on a stop meanwhile.

        Needs no timeout of its own: the readiness deadline and the crash-loop limit bound it.
        """
        while True:
            changed = self._changed
            if self._state is ProcessState.READY:
                return
            if self._state is ProcessState.FAILED or (
                self._state is ProcessState.STOPPED
                and (self._runner is None or self._runner.done())
            ):
                raise ProcessFailed(self.spec.name, self._detail, tuple(self.log.texts(LAST_LINES)))
            await changed.wait()

    async def ensure_ready(self) -> None:
        await self.start()
        await self.wait_ready()

    async def stop(self) -> None:
        """SIGTERM the group, wait the grace period, SIGKILL; returns once it is gone."""
        runner = self._runner
        if runner is None or runner.done():
            if self._state is ProcessState.FAILED:
                self._set(ProcessState.STOPPED, "stopped after failing")
            return
        self._stop.set()
        await asyncio.shield(runner)

    # -- the writer --------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    crash = await self._life()
                except SupervisorError as exc:
                    if not exc.transient:
                        self._set(ProcessState.FAILED, exc.message)
                        return
                    crash = self._crashed(exc.message)  # backs off like a crash, counted alike
                if crash is None:
                    return
                verdict = self._history.crashed()
                if not verdict.restart:
                    self._set(ProcessState.FAILED, f"{crash}; {verdict.reason}: gave up")
                    return
                self._set(
                    ProcessState.BACKOFF,
                    f"{crash}; restart in {verdict.delay_s:.2f} s ({verdict.reason})",
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(verdict.delay_s):
                        await self._stop.wait()
        finally:
            if self._state is not ProcessState.FAILED:
                self._set(ProcessState.STOPPED, "stopped")

    async def _life(self) -> str | None:
        """One run of the child: None when stopped on request, else what went wrong."""
        spec = self.spec
        self._set(ProcessState.STARTING, "clearing the way")
        await self._clear_way()
        child = await self._spawn()
        pid = child.pid
        self._set(ProcessState.STARTING, f"pid {pid}: probing for up to {spec.ready_timeout_s:g} s")
        exited = asyncio.create_task(child.wait())
        stopping = asyncio.create_task(self._stop.wait())
        ready = asyncio.create_task(self._until_ready())
        try:
            await asyncio.wait({exited, stopping, ready}, return_when=asyncio.FIRST_COMPLETED)
            if stopping.done():
                return None
            if exited.done():
                return self._crashed(f"exited with {child.describe_exit()} before it was ready")
            ok, why = ready.result()
            if not ok:
                return self._crashed(f"not ready within {spec.ready_timeout_s:g} s ({why})")
            self._history.ready()
            self._set(ProcessState.READY, f"pid {pid} ready")
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stopping.done():
                return None
            return self._crashed(f"exited with {child.describe_exit()}")
        finally:
            for task in (exited, stopping, ready):
                task.cancel()
            await self._end(child)

    def _crashed(self, why: str) -> str:
        self._set(ProcessState.CRASHED, why)
        return why

    async def _clear_way(self) -> None:
        spec = self.spec
        if self._pid_dir is not None:
            for _path, record in pidfiles.read_all(self._pid_dir):
                if record is None or record.name != spec.name:
                    continue
                if pidfiles.live_child(record) is not None and pidfiles.owner_alive(record):
                    raise ProcessFailed(
                        spec.name, f"pid {record.pid} is run by orchestrator {record.owner_pid}"
                    )
                await pidfiles.stop_orphan(record, spec.stop_grace_s)
                pidfiles.remove(self._pid_dir, spec.name)
        if spec.port is not None and not port_free(spec.host, spec.port):
            raise PortTaken(
                spec.name,
                f"port {spec.port} on {spec.host} is already in use by {port_holder(spec.port)}, "
                "which this supervisor did not start; stop it or configure another port",
            )

    async def _spawn(self) -> Child:
        spec = self.spec
        try:
            child = await Child.spawn(
                spec.command, env=spec.env, cwd=spec.cwd, on_line=self._on_line
            )
        except OSError as exc:
            raise ProcessFailed(
                spec.name,
                f"cannot run {spec.command[0]!r}: {exc}",
                transient=exc.errno in TRANSIENT_SPAWN_ERRNOS,
            ) from exc
        self._child = child
        self.starts += 1
        self.exit_code = None
        if self._pid_dir is not None:
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                record = pidfiles.PidRecord.for_child(spec.name, child.pid, spec.port)
                pidfiles.write(self._pid_dir, record)
        return child

    async def _until_ready(self) -> tuple[bool, str]:
        spec = self.spec
        if spec.probe is None or spec.port is None:
            return True, "no probe"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + spec.ready_timeout_s
        delay, why = 0.05, "no answer yet"
        while loop.time() < deadline:
            ok, why = await spec.probe.check(spec.host, spec.port)
            if ok:
                return True, why
            await asyncio.sleep(max(0.0, min(delay, deadline - loop.time())))
            delay = min(delay * 1.5, 0.5)
        return False, why

    async def _end(self, child: Child) -> None:
        """Make sure the whole group is gone, then forget the child."""
        grace = self.spec.stop_grace_s

        def escalate() -> None:
            self.log.append("supervisor", f"still running {grace:g} s after SIGTERM: SIGKILL")
            log.warning("%s ignored SIGTERM for %g s: SIGKILL", self.spec.name, grace)

        try:
            if child.returncode is None:
                if self._stop.is_set():
                    self._set(ProcessState.STOPPING, f"SIGTERM to group {child.pid}")
                await child.terminate(grace, escalate)
        except BaseException:
            child.signal_group(signal.SIGKILL)  # cancelled mid-stop: no waiting, no orphan
            raise
        finally:
            child.close()
            self.exit_code = child.returncode
            self._child = None
            if self._pid_dir is not None:
                pidfiles.remove(self._pid_dir, self.spec.name)

    def _on_line(self, stream: str, text: str) -> None:
        self.log.append(stream, text)
        self._log_line(logging.INFO, text)

    def _set(self, state: ProcessState, detail: str) -> None:
        self._state, self._detail, self._since = state, detail, time.time()
        self.log.append("supervisor", f"{state}: {detail}")
        failing = state in (ProcessState.CRASHED, ProcessState.BACKOFF, ProcessState.FAILED)
        log.log(
            logging.WARNING if failing else logging.INFO, "%s %s: %s", self.spec.name, state, detail
        )
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        for listener in list(self.listeners):
            try:
                listener(state)
            except Exception:
                log.exception("listener of %s failed", self.spec.name)
