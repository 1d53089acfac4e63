"""The supervisor against real child processes (tests/peers/http_peer.py), not mocks.

Every wait is on a state change or a bounded poll; no test sleeps to let a race settle.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psutil
import pytest

from services.process import pidfiles
from services.process.probes import HttpProbe, TcpProbe
from services.process.process_log import LogRing
from services.process.restart_policy import RestartPolicy
from services.process.supervisor import ProcessFailed, ProcessSpec, ProcessState, Supervisor
from tests.conftest import free_port
from tests.peers.watch import StateLog, alive, http_peer, reap_quietly, until_dead

FAST = RestartPolicy(initial_delay_s=0.05, factor=2.0, max_delay_s=1.0, max_restarts=2)


def spec(port: int, *args: str, **kwargs: object) -> ProcessSpec:
    options: dict[str, object] = {
        "name": "peer",
        "command": http_peer(port, *args),
        "port": port,
        "probe": HttpProbe("/ready"),
        "ready_timeout_s": 10.0,
        "stop_grace_s": 5.0,
        "restart": FAST,
    }
    options.update(kwargs)
    return ProcessSpec(**options)  # type: ignore[arg-type]


@pytest.fixture
async def supervisor(tmp_path: Path) -> AsyncIterator[Supervisor]:
    # children another test's fixtures keep (a module's peer server) are not this one's
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    supervisor = Supervisor(tmp_path / "pids")
    yield supervisor
    await supervisor.stop_all()
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    assert not [p for p in left if alive(p.pid)], [p.cmdline() for p in left if alive(p.pid)]


async def test_ready_only_once_the_probe_passes(supervisor: Supervisor) -> None:
    port = free_port()
    process = supervisor.process(spec(port, "--ready-after", "0.4"))
    started = time.monotonic()
    await process.ensure_ready()
    assert time.monotonic() - started >= 0.4
    assert process.state is ProcessState.READY
    async with httpx.AsyncClient(trust_env=False) as client:
        assert (await client.get(f"http://127.0.0.1:{port}/ready")).status_code == 200
    pid = process.pid
    assert pid is not None
    pidfile = pidfiles.path_for(supervisor.pid_dir or Path(), "peer")
    assert pidfile.is_file()
    await process.stop()
    assert process.state is ProcessState.STOPPED
    assert not alive(pid)
    assert not pidfile.exists()


async def test_json_probe_waits_for_model_loaded(supervisor: Supervisor) -> None:
    port = free_port()
    probe = HttpProbe("/health", json_true="model_loaded")
    process = supervisor.process(spec(port, "--ready-after", "0.3", probe=probe))
    started = time.monotonic()
    await process.ensure_ready()
    assert time.monotonic() - started >= 0.3


async def test_tcp_probe(supervisor: Supervisor) -> None:
    process = supervisor.process(spec(free_port(), probe=TcpProbe()))
    await process.ensure_ready()
    assert process.state is ProcessState.READY


async def test_crash_loop_backs_off_then_fails_with_last_lines(supervisor: Supervisor) -> None:
    process = supervisor.process(spec(free_port(), "--lines", "3", "--crash-after", "0"))
    states = StateLog(process)
    with pytest.raises(ProcessFailed) as failure:
        await process.ensure_ready()
    assert process.state is ProcessState.FAILED
    assert process.starts == FAST.max_restarts + 1
    assert states.states.count(ProcessState.BACKOFF) == FAST.max_restarts
    assert states.states.count(ProcessState.CRASHED) == FAST.max_restarts + 1
    assert "crash loop" in failure.value.message
    assert any("boom: crashing with code 3" in line for line in failure.value.last_lines)
    assert "line 2" in process.status().last_lines
    backoffs = [line for line in process.log.texts() if line.startswith("backoff")]
    assert "restart in 0.05 s" in backoffs[0] and "restart in 0.10 s" in backoffs[1]


async def test_not_ready_in_time_is_killed_and_counted(supervisor: Supervisor) -> None:
    no_restart = RestartPolicy(restart=False)
    process = supervisor.process(
        spec(free_port(), "--ready-after", "60", ready_timeout_s=0.5, restart=no_restart)
    )
    states = StateLog(process)
    await process.start()
    await states.reach(ProcessState.STARTING, 2)  # the second one carries the pid
    pid = process.pid
    assert pid is not None
    with pytest.raises(ProcessFailed, match=r"not ready within 0\.5 s"):
        await process.wait_ready()
    assert not alive(pid)


async def test_killed_process_comes_back_after_backoff(supervisor: Supervisor) -> None:
    process = supervisor.process(spec(free_port()))
    await process.ensure_ready()
    first = process.pid
    assert first is not None
    states = StateLog(process)
    os.kill(first, signal.SIGKILL)
    await states.until(lambda s: s[-1:] == [ProcessState.READY])
    assert states.states[:3] == [ProcessState.CRASHED, ProcessState.BACKOFF, ProcessState.STARTING]
    assert process.pid not in (None, first)
    assert process.starts == 2
    assert any("exited with signal SIGKILL" in line for line in process.log.texts())


async def test_sigterm_ignored_escalates_to_sigkill(supervisor: Supervisor) -> None:
    process = supervisor.process(spec(free_port(), "--ignore-sigterm", stop_grace_s=0.5))
    await process.ensure_ready()
    pid = process.pid
    assert pid is not None
    started = time.monotonic()
    await process.stop()
    assert time.monotonic() - started >= 0.5
    assert process.exit_code == -signal.SIGKILL
    assert not alive(pid)
    assert any("SIGKILL" in line for line in process.log.texts())


async def test_stop_takes_the_whole_group(supervisor: Supervisor) -> None:
    process = supervisor.process(spec(free_port(), "--spawn-child"))
    await process.ensure_ready()
    grandchild = _grandchild(process.log.texts())
    assert alive(grandchild)
    await process.stop()
    await until_dead(grandchild, 5.0)


async def test_crash_is_seen_while_a_grandchild_holds_the_pipes(supervisor: Supervisor) -> None:
    no_restart = RestartPolicy(restart=False)
    process = supervisor.process(
        spec(free_port(), "--spawn-child", "--crash-after", "0.5", restart=no_restart)
    )
    await process.ensure_ready()
    grandchild = _grandchild(process.log.texts())
    states = StateLog(process)
    await states.reach(ProcessState.FAILED)
    assert any("exited with code 3" in line for line in process.log.texts())
    await until_dead(grandchild, 5.0)


async def test_chatty_child_never_blocks_and_the_ring_stays_bounded(
    supervisor: Supervisor,
) -> None:
    chatty = 4_000_000  # bytes to each pipe before it listens: far beyond a pipe's 64 KiB
    # the child must push 8 MB through its pipes before it listens: on a loaded machine that
    # takes longer than the usual readiness budget, and the budget is not what this test is about
    process = supervisor.process(
        spec(
            free_port(),
            "--chatty",
            str(chatty),
            "--long-line",
            "300000",
            log_lines=100,
            ready_timeout_s=120.0,
        )
    )
    await process.ensure_ready()
    # the child wrote everything before it listened; the last pipe-fulls may still be on their
    # way in: wait for every chatty line and the long line's pieces (it arrives cut into
    # bounded pieces, none held whole; how many depends on how the reads fall: 33 to 40 extra
    # lines were seen, so the wait asks for half of the 36 a clean cut gives)
    async with asyncio.timeout(60):
        await until_total(process.log, 2 * chatty // 100 + 300_000 // 8192 // 2)
    lines = process.log.tail()
    assert len(lines) == 100
    assert max(len(line.text) for line in lines) <= 2002


async def until_total(log: LogRing, count: int) -> None:
    """Wait until ``count`` lines have arrived. A poll of the count, not ``follow``: a follower
    is registered only when first awaited, so lines that land between a check and that moment
    would never wake it (CI hung on exactly that once)."""
    while log.total < count:
        await asyncio.sleep(0.05)


async def test_port_taken_by_a_stranger_is_a_clear_error(supervisor: Supervisor) -> None:
    stranger = socket.socket()
    stranger.bind(("127.0.0.1", 0))
    stranger.listen()
    port = stranger.getsockname()[1]
    try:
        process = supervisor.process(spec(port))
        with pytest.raises(ProcessFailed) as failure:
            await process.ensure_ready()
        assert f"port {port} on 127.0.0.1 is already in use by pid {os.getpid()}" in str(
            failure.value
        )
        assert process.state is ProcessState.FAILED
        assert process.starts == 0  # nothing was started, nothing was signalled
        stranger.getsockname()  # still ours and open
    finally:
        stranger.close()


async def test_command_that_cannot_run_fails_at_once(supervisor: Supervisor) -> None:
    missing = ProcessSpec(name="ghost", command=("/nonexistent/ollama", "serve"))
    process = supervisor.process(missing)
    states = StateLog(process)
    with pytest.raises(ProcessFailed, match="cannot run '/nonexistent/ollama'") as failure:
        await process.ensure_ready()
    assert process.starts == 0
    assert not failure.value.transient  # a permanent failure: no backoff, no retry
    assert states.states == [ProcessState.STARTING, ProcessState.FAILED]


async def test_a_busy_executable_is_transient_and_backed_off_from(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    """An executable still open for writing (being installed) cannot run yet: ETXTBSY is a
    transient failure, so the supervisor backs off and tries again instead of giving up as it
    does for a missing one (above). The writer closes as the backoff begins, so the retry's
    outcome does not depend on timing."""
    script = tmp_path / "server.sh"
    writer = script.open("w")
    writer.write("#!/bin/sh\nexec sleep 60\n")
    writer.flush()
    script.chmod(0o755)
    try:
        subprocess.run([str(script)], check=False)
    except OSError as exc:
        assert exc.errno == errno.ETXTBSY
    else:
        writer.close()
        pytest.skip("this kernel runs an executable that is open for writing")
    process = supervisor.process(ProcessSpec(name="busy", command=(str(script),), restart=FAST))
    states = StateLog(process)
    process.listeners.append(
        lambda state: writer.close() if state is ProcessState.BACKOFF else None
    )
    try:
        await process.ensure_ready()
    finally:
        writer.close()
    assert states.states[:2] == [ProcessState.STARTING, ProcessState.CRASHED]
    assert ProcessState.BACKOFF in states.states and ProcessState.FAILED not in states.states
    assert process.starts == 1


async def test_stop_during_backoff_and_restart_after_failure(supervisor: Supervisor) -> None:
    slow = RestartPolicy(initial_delay_s=30.0, max_delay_s=30.0)
    port = free_port()
    process = supervisor.process(spec(port, "--crash-after", "0", restart=slow))
    states = StateLog(process)
    await process.start()
    await states.reach(ProcessState.BACKOFF)
    started = time.monotonic()
    await process.stop()
    assert time.monotonic() - started < 5
    assert process.state is ProcessState.STOPPED


async def test_cancelled_waiter_leaves_the_process_running(supervisor: Supervisor) -> None:
    process = supervisor.process(spec(free_port(), "--ready-after", "0.5"))
    waiter = asyncio.create_task(process.ensure_ready())
    states = StateLog(process)
    await states.reach(ProcessState.STARTING)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await process.wait_ready()
    assert process.state is ProcessState.READY


async def _orphan_of_a_killed_orchestrator(pid_dir: Path, port: int) -> int:
    """Run an orchestrator that starts the peer, SIGKILL it, return the orphaned peer's pid."""
    root = Path(__file__).resolve().parent.parent
    orchestrator = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.peers.mini_orchestrator",
        str(pid_dir),
        str(port),
        cwd=root,
        stdout=asyncio.subprocess.PIPE,
    )
    assert orchestrator.stdout is not None
    async with asyncio.timeout(30):
        line = (await orchestrator.stdout.readline()).decode()
    assert line.startswith("READY "), line
    orphan = int(line.split()[1])
    orchestrator.kill()
    await orchestrator.wait()
    assert alive(orphan), "the peer should outlive its orchestrator (own session)"
    return orphan


async def test_orphans_of_a_crashed_orchestrator_are_stopped(tmp_path: Path) -> None:
    pid_dir = tmp_path / "pids"
    orphan = await _orphan_of_a_killed_orchestrator(pid_dir, free_port())
    try:
        recovered = await Supervisor(pid_dir).recover_orphans(grace_s=5)
        assert recovered == [("peer", "terminated")]
        await until_dead(orphan, 5.0)
        assert not list(pid_dir.glob("*.json"))
    finally:
        reap_quietly(orphan)


async def test_restart_clears_its_own_orphan_from_the_port(tmp_path: Path) -> None:
    pid_dir, port = tmp_path / "pids", free_port()
    orphan = await _orphan_of_a_killed_orchestrator(pid_dir, port)
    supervisor = Supervisor(pid_dir)
    try:
        process = supervisor.process(spec(port))
        await process.ensure_ready()  # the orphan held the port: it was ours, so it was stopped
        assert not alive(orphan)
        assert process.pid != orphan
    finally:
        await supervisor.stop_all()
        reap_quietly(orphan)


async def test_a_pidfile_pointing_at_a_stranger_signals_nobody(tmp_path: Path) -> None:
    pid_dir = tmp_path / "pids"
    stranger = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(60)"
    )
    try:
        real = pidfiles.PidRecord.for_child("engine", stranger.pid, None)
        dead_owner = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
        await dead_owner.wait()
        forged = [
            # the pid was reused: another start time
            {**real.__dict__, "create_time": real.create_time - 1000, "owner_pid": dead_owner.pid},
            # same pid and start, another program
            {**real.__dict__, "cmdline": ["ollama", "serve"], "owner_pid": dead_owner.pid},
        ]
        for record in forged:
            pidfiles.write(pid_dir, pidfiles.PidRecord(**record))
            outcome = await Supervisor(pid_dir).recover_orphans(grace_s=1)
            assert outcome == [("engine", "not running (or no longer ours)")]
            assert stranger.returncode is None and alive(stranger.pid)
        # and an orphan whose orchestrator still runs (this test process) is left alone too
        pidfiles.write(pid_dir, real)
        assert await Supervisor(pid_dir).recover_orphans(grace_s=1) == []
        assert alive(stranger.pid)
    finally:
        stranger.kill()
        await stranger.wait()


def _grandchild(lines: list[str]) -> int:
    for line in lines:
        if line.startswith("grandchild pid "):
            return int(line.split()[-1])
    raise AssertionError(f"no grandchild announced in {lines}")
