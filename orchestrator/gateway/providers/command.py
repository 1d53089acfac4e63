"""``kind = "command"``: operator-given shell commands start, stop and look at the host.

For hosts no cloud adapter covers (a RunPod or Lambda CLI, ``virsh``, Wake-on-LAN and ``ssh ...
poweroff``). Each command runs under ``/bin/sh`` in a process group of its own, killed with all it
started at ``timeout_s`` (``shell.py``). Its environment gets ``VO_HOST_ACTION`` (``start``,
``stop`` or ``status``) and ``VO_HOST_URL``, so one script can serve all three. What each outcome
means:

    status  exit 0: the first word of stdout is stopped, starting, running or stopping (any other
            output is UNKNOWN, with the output in the detail); another exit: ProviderError
    start   exit 0: started (status is asked for the view); exit 75 (EX_TEMPFAIL, "try again
            later"), or another failing exit with a line ``stockout`` among its last ten lines
            of output: HostStartFailed(stockout=True), as after a cloud's want of capacity;
            another exit: HostStartFailed with the command's last output lines
    stop    exit 0: stopped (status is asked for the view); another exit: ProviderError
    any     still running at timeout_s: killed, ProviderError with its last output lines

Every call is safe to repeat: start and stop ask status first and do nothing to a host already
running or starting (stopped or stopping), since a cloud CLI may refuse a second start.
"""

from __future__ import annotations

import signal
from dataclasses import replace

from orchestrator.config.gateway import CommandProvider
from orchestrator.gateway.errors import HostStartFailed, ProviderError
from orchestrator.gateway.providers.base import HostView, PowerState
from orchestrator.gateway.providers.shell import CommandResult, run_shell

STOCKOUT_EXIT = 75  # EX_TEMPFAIL in sysexits.h
STOCKOUT_LINE = "stockout"
WORDS = {
    state.value: state
    for state in (PowerState.STOPPED, PowerState.STARTING, PowerState.RUNNING, PowerState.STOPPING)
}
UP = frozenset({PowerState.RUNNING, PowerState.STARTING})
DOWN = frozenset({PowerState.STOPPED, PowerState.STOPPING})


class CommandHost:
    name = "command"

    def __init__(self, config: CommandProvider) -> None:
        self._config = config

    async def status(self) -> HostView:
        result = await self._run("status", self._config.status, merge_stderr=False)
        if result.returncode != 0:
            raise ProviderError(f"the host's status command {_exit(result)}: {result.last_lines()}")
        words = result.stdout_head.split()
        state = WORDS.get(words[0].lower()) if words else None
        if state is None:
            said = " ".join(words)[:300] or "nothing"
            return HostView(
                PowerState.UNKNOWN,
                detail=f"the status command printed {said!r}, not one of {', '.join(WORDS)}",
            )
        url = self._config.url if state is PowerState.RUNNING else None
        return HostView(state, url=url, detail=" ".join(words[1:])[:300])

    async def start(self) -> HostView:
        before = await self.status()
        if before.state in UP:
            return replace(before, detail=_join(f"already {before.state}", before.detail))
        result = await self._run("start", self._config.start)
        if result.returncode != 0:
            lines = result.last_lines()
            said_stockout = STOCKOUT_LINE in {line.strip().lower() for line in lines.splitlines()}
            stockout = result.returncode == STOCKOUT_EXIT or said_stockout
            raise HostStartFailed(
                f"the host's start command {_exit(result)}"
                f"{' (no capacity)' if stockout else ''}: {lines}",
                stockout=stockout,
            )
        return await self.status()

    async def stop(self) -> HostView:
        before = await self.status()
        if before.state in DOWN:
            return replace(before, detail=_join(f"already {before.state}", before.detail))
        result = await self._run("stop", self._config.stop)
        if result.returncode != 0:
            raise ProviderError(f"the host's stop command {_exit(result)}: {result.last_lines()}")
        return await self.status()

    async def close(self) -> None:
        """Nothing to release: each command ends (or is killed with its group) within its call."""

    async def _run(self, action: str, command: str, *, merge_stderr: bool = True) -> CommandResult:
        timeout_s = self._config.timeout_s
        try:
            result = await run_shell(
                command,
                timeout_s=timeout_s,
                env={"VO_HOST_ACTION": action, "VO_HOST_URL": self._config.url},
                merge_stderr=merge_stderr,
            )
        except OSError as exc:
            raise ProviderError(f"the host's {action} command could not run: {exc}") from exc
        if result.timed_out:
            raise ProviderError(
                f"the host's {action} command did not finish within {timeout_s:g} s and was "
                f"killed with its process group; its last output: {result.last_lines()}"
            )
        return result


def _exit(result: CommandResult) -> str:
    code = result.returncode
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            pass
    return f"exited with status {code}"


def _join(*parts: str) -> str:
    return "; ".join(part for part in parts if part)
