"""Stands in for an orchestrator that dies without cleaning up: it starts one managed process
under a real Supervisor with pidfiles, says so, then waits to be killed (SIGKILL, no cleanup)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from services.process.probes import HttpProbe
from services.process.supervisor import ProcessSpec, Supervisor

PEER = Path(__file__).with_name("http_peer.py")


async def main(pid_dir: Path, port: int) -> None:
    supervisor = Supervisor(pid_dir)
    spec = ProcessSpec(
        name="peer",
        command=(sys.executable, str(PEER), "--port", str(port)),
        port=port,
        probe=HttpProbe("/ready"),
        ready_timeout_s=20,
    )
    process = supervisor.process(spec)
    await process.ensure_ready()
    print(f"READY {process.pid}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
