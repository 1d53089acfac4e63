"""Helpers for tests that drive real processes: wait on events with a deadline, never sleep."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from services.base import EngineState
from services.managed import ServerEngine
from services.process.supervisor import ManagedProcess, ProcessState

PEERS = Path(__file__).parent
HTTP_PEER = PEERS / "http_peer.py"


def http_peer(port: int, *args: str) -> tuple[str, ...]:
    return (sys.executable, str(HTTP_PEER), "--port", str(port), *args)


class StateLog:
    """Every state a process passes through, from now on, and a way to wait for a pattern."""

    def __init__(self, process: ManagedProcess) -> None:
        self.states: list[ProcessState] = []
        self._changed = asyncio.Event()
        process.listeners.append(self._note)

    def _note(self, state: ProcessState) -> None:
        self.states.append(state)
        self._changed.set()

    async def until(
        self, predicate: Callable[[list[ProcessState]], bool], timeout_s: float = 15.0
    ) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate(self.states):
                self._changed.clear()
                await self._changed.wait()

    async def reach(self, state: ProcessState, count: int = 1, timeout_s: float = 15.0) -> None:
        await self.until(lambda states: states.count(state) >= count, timeout_s)


def alive(pid: int) -> bool:
    """Running and not a zombie (an orphan reparented to a non-reaping init stays a zombie)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def until_dead(pid: int, timeout_s: float = 10.0) -> None:
    """Wait for a process that is not our child to go (bounded poll; its parent reaps it)."""
    async with asyncio.timeout(timeout_s):
        while alive(pid):
            await asyncio.sleep(0.02)


def reap_quietly(pid: int) -> None:
    with contextlib.suppress(psutil.Error):
        psutil.Process(pid).kill()


def start_peer(
    module: str, args: list[str], env: dict[str, str], port: int, log_file: Path
) -> subprocess.Popen[bytes]:
    """Run ``python -m module args`` from the repository root and wait until ``port`` answers."""
    root = Path(__file__).resolve().parent.parent.parent
    with log_file.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=root,
            env={**os.environ, **env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{module} exited: {log_file.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{module} did not listen on {port}: {log_file.read_text()[-2000:]}")


def stop_peer(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def next_engine_state(engine: ServerEngine) -> asyncio.Future[EngineState]:
    """The engine's state the next time it changes on its own (a re-attach after a restart)."""
    future: asyncio.Future[EngineState] = asyncio.get_running_loop().create_future()

    def note(state: EngineState) -> None:
        if not future.done():
            future.set_result(state)

    engine.state_listeners.append(note)
    return future
