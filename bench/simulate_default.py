"""Print the simulator's table on a generated 30-day tutoring trace, for two profiles.

    python bench/simulate_default.py [--seed 7] [--days 30]

The trace comes from ``bench/make_trace.py`` and goes through ``python -m orchestrator simulate``'s
own code, so the figures are the ones an operator would get. Profiles: the default (``auto``,
which is ``cpu`` on a machine without a GPU) and ``t4-16gb``, whose price shows the dollars.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_trace import make_trace, write_csv

from orchestrator.commands import simulate
from orchestrator.config import load_config
from orchestrator.credits.gateway_sim import DEFAULT_HINT_LEAD_S
from orchestrator.credits.simulator import DEFAULT_BOOT_S
from services import nvml

PROFILES = (None, "t4-16gb")  # None: the default profile setting ("auto")
# The gateway VM's price in its rows: an e2-standard-2 (8 GB, the size the bridge needs; see the
# README's bridge section), us-central1 on-demand list price. Without the bridge an e2-small
# ($0.0168/h) would do; the table prices both the same, so the bridge's rows are fair to the
# others and the others are slightly overpriced.
GATEWAY_VM_USD_PER_HOUR = 0.067


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args(argv)
    gpus = nvml.list_gpus()
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "tutoring-30d.csv"
        write_csv(trace, make_trace(args.days, args.seed, date(2026, 3, 2)))
        prices = Path(tmp) / "gateway.toml"
        prices.write_text(f"[gateway]\nusd_per_hour = {GATEWAY_VM_USD_PER_HOUR}\n")
        for profile in PROFILES:
            config = load_config(
                profile=profile,
                config_file=prices,
                environ={},
                gpu_memory_bytes=gpus[0].total_bytes if gpus else None,
            )
            print(f"== profile {profile or 'default'} ({config.profile}), seed {args.seed}")
            namespace = argparse.Namespace(
                trace=trace,
                json=False,
                load=[],
                boot_s=DEFAULT_BOOT_S,
                timeouts="15,30",
                hint_lead_s=DEFAULT_HINT_LEAD_S,
            )
            simulate.run(namespace, config)
            print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
