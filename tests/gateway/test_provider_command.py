"""The command provider against real shell scripts that keep the "host" in a state file.

Every test runs real processes: ``/bin/sh`` scripts written to tmp_path. The ones about killing
read the process group from ``/proc`` and check with psutil that nothing in it still lives.
"""

from __future__ import annotations

import asyncio
import os
import textwrap
from pathlib import Path

import psutil
import pytest

from orchestrator.config.gateway import CommandProvider
from orchestrator.gateway.errors import HostStartFailed, ProviderError
from orchestrator.gateway.providers.base import PowerState
from orchestrator.gateway.providers.command import CommandHost

URL = "http://10.0.0.5:11400"

# One script serves all three actions, as the docstring of command.py suggests; it logs each
# action it is run for (from VO_HOST_ACTION) so a test can see which commands ran.
HOST_SCRIPT = """\
#!/bin/sh
dir=$(dirname "$0")
echo "$VO_HOST_ACTION $VO_HOST_URL" >> "$dir/calls.log"
case "$VO_HOST_ACTION" in
  start) echo "powering on the box"; echo running > "$dir/state" ;;
  stop) echo "powering off"; echo stopped > "$dir/state" ;;
  status)
    if [ -f "$dir/state" ]; then echo "$(cat "$dir/state") since boot"; else echo stopped; fi ;;
esac
"""


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return f"sh {path}"


def provider(tmp_path: Path, timeout_s: float = 10.0, **commands: str) -> CommandHost:
    host = script(tmp_path, "host.sh", HOST_SCRIPT)
    config = CommandProvider(
        start=commands.get("start", host),
        stop=commands.get("stop", host),
        status=commands.get("status", host),
        url=URL,
        timeout_s=timeout_s,
    )
    return CommandHost(config)


def calls(tmp_path: Path) -> list[str]:
    return (tmp_path / "calls.log").read_text().split("\n")[:-1]


def living_members(pgid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return found


async def group_gone(pgid: int, within_s: float = 10.0) -> list[psutil.Process]:
    """The group's living members once none is left, or those still alive after ``within_s``.
    A SIGKILL to a group is delivered at once, but a member on another core may run on for a
    moment before it dies: the check waits for the deaths, bounded, instead of racing them."""
    deadline = asyncio.get_running_loop().time() + within_s
    while (left := living_members(pgid)) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    return left


async def test_start_status_stop_round_trip(tmp_path: Path) -> None:
    host = provider(tmp_path)
    stopped = await host.status()
    assert (stopped.state, stopped.url) == (PowerState.STOPPED, None)

    started = await host.start()
    assert started.state is PowerState.RUNNING
    assert started.url == URL
    assert started.detail == "since boot"
    assert (await host.status()).state is PowerState.RUNNING

    down = await host.stop()
    assert (down.state, down.url) == (PowerState.STOPPED, None)
    assert calls(tmp_path) == [
        f"status {URL}",
        f"status {URL}",
        f"start {URL}",
        f"status {URL}",
        f"status {URL}",
        f"status {URL}",
        f"stop {URL}",
        f"status {URL}",
    ]


async def test_start_and_stop_are_safe_to_repeat(tmp_path: Path) -> None:
    host = provider(tmp_path)
    await host.start()
    again = await host.start()
    assert again.state is PowerState.RUNNING
    assert again.detail.startswith("already running")
    await host.stop()
    again = await host.stop()
    assert again.state is PowerState.STOPPED
    assert again.detail.startswith("already stopped")
    actions = [line.split()[0] for line in calls(tmp_path)]
    assert actions.count("start") == 1
    assert actions.count("stop") == 1


async def test_a_failing_start_gives_its_last_output_lines(tmp_path: Path) -> None:
    start = script(
        tmp_path,
        "start.sh",
        """\
        echo "checking the image"
        echo "error: volume vol-42 is attached elsewhere" >&2
        exit 3
        """,
    )
    host = provider(tmp_path, start=start)
    with pytest.raises(HostStartFailed) as caught:
        await host.start()
    assert caught.value.stockout is False
    assert "exited with status 3" in caught.value.reason
    assert "checking the image\nerror: volume vol-42 is attached elsewhere" in caught.value.reason


@pytest.mark.parametrize(
    "body",
    [
        'echo "no GPU in eu-west-2b right now"\nexit 75\n',
        'echo "no GPU in eu-west-2b right now"\necho stockout\nexit 1\n',
    ],
    ids=["exit-75", "stockout-line"],
)
async def test_a_start_command_can_say_stockout(tmp_path: Path, body: str) -> None:
    host = provider(tmp_path, start=script(tmp_path, "start.sh", body))
    with pytest.raises(HostStartFailed) as caught:
        await host.start()
    assert caught.value.stockout is True
    assert "no GPU in eu-west-2b right now" in caught.value.reason


async def test_an_ordinary_failure_mentioning_stockout_is_not_one(tmp_path: Path) -> None:
    body = 'echo "stockout handling is not configured"\nexit 1\n'
    host = provider(tmp_path, start=script(tmp_path, "start.sh", body))
    with pytest.raises(HostStartFailed) as caught:
        await host.start()
    assert caught.value.stockout is False


async def test_a_hanging_command_is_killed_with_its_group(tmp_path: Path) -> None:
    pgid_file = tmp_path / "pgid"
    start = script(
        tmp_path,
        "start.sh",
        f"""\
        cut -d' ' -f5 /proc/$$/stat > {pgid_file}.tmp && mv {pgid_file}.tmp {pgid_file}
        sleep 300 &
        echo "waiting for the cloud"
        sleep 300
        """,
    )
    host = provider(tmp_path, timeout_s=1.5, start=start)
    with pytest.raises(ProviderError) as caught:
        await host.start()
    message = str(caught.value)
    assert "start command did not finish within 1.5 s" in message
    assert "waiting for the cloud" in message
    pgid = int(pgid_file.read_text())
    assert await group_gone(pgid) == []


async def test_what_a_command_leaves_behind_is_killed_and_does_not_hold_the_call(
    tmp_path: Path,
) -> None:
    """The background sleep keeps the pipe open: a call that waited for the pipes to close
    would run into the 60 s timeout and fail instead of returning."""
    pid_file = tmp_path / "straggler"
    start = script(
        tmp_path,
        "start.sh",
        f"""\
        sleep 300 &
        echo $! > {pid_file}
        echo running > {tmp_path}/state
        """,
    )
    host = provider(tmp_path, timeout_s=60.0, start=start)
    assert (await host.start()).state is PowerState.RUNNING
    straggler = int(pid_file.read_text())
    try:
        alive = psutil.Process(straggler).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        alive = False
    assert not alive


@pytest.mark.parametrize("output", ["ERROR: token expired", ""])
async def test_a_status_it_cannot_read_is_unknown(tmp_path: Path, output: str) -> None:
    status = script(tmp_path, "status.sh", f'echo "{output}"\n')
    view = await provider(tmp_path, status=status).status()
    assert view.state is PowerState.UNKNOWN
    assert view.url is None
    assert (output or "nothing") in view.detail


async def test_the_status_word_is_read_from_stdout_only(tmp_path: Path) -> None:
    status = script(tmp_path, "status.sh", "echo 'warning: slow API' >&2\necho Starting\n")
    view = await provider(tmp_path, status=status).status()
    assert view.state is PowerState.STARTING


async def test_a_failing_status_is_a_provider_error(tmp_path: Path) -> None:
    status = script(tmp_path, "status.sh", "echo 'runpodctl: not logged in' >&2\nexit 2\n")
    with pytest.raises(ProviderError, match="status command exited with status 2: runpodctl"):
        await provider(tmp_path, status=status).status()


async def test_a_failing_stop_is_a_provider_error(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("running\n")
    stop = script(tmp_path, "stop.sh", "echo 'virsh: domain is locked'\nexit 1\n")
    with pytest.raises(ProviderError, match="stop command exited with status 1: virsh"):
        await provider(tmp_path, stop=stop).stop()


async def test_output_is_kept_bounded(tmp_path: Path) -> None:
    body = 'i=0; while [ $i -lt 20000 ]; do echo "line $i of noise"; i=$((i+1)); done\n'
    body += "echo 'the real reason'\nexit 1\n"
    host = provider(tmp_path, start=script(tmp_path, "start.sh", body))
    with pytest.raises(HostStartFailed) as caught:
        await host.start()
    reason = caught.value.reason
    assert reason.endswith("the real reason")
    assert "line 19999 of noise" in reason
    assert "line 0 of noise" not in reason
    assert len(reason) < 1000
