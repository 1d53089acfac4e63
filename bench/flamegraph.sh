#!/usr/bin/env bash
# A py-spy flame graph of a bench's measuring phase only (not its model building):
#
#   bench/flamegraph.sh OUT.svg MARKER SECONDS python bench/latency.py --turns 12
#
# It starts the bench, waits until a stack dump of the process shows MARKER (a function or a
# thread name that appears once the bench measures, e.g. `generate-llm` for latency.py, the
# LLM's generation thread; `Lockstep` for duplex_gateway.py), then samples it for SECONDS at
# 250 Hz. py-spy needs ptrace on the bench process (`pip install py-spy`; root or
# CAP_SYS_PTRACE in containers).
set -euo pipefail
out=$1 marker=$2 seconds=$3
shift 3
"$@" &
pid=$!
for _ in $(seq 1 300); do
  sleep 1
  if py-spy dump --pid "$pid" 2>/dev/null | grep -q -- "$marker"; then
    break
  fi
done
py-spy record --pid "$pid" --duration "$seconds" --rate 250 --output "$out"
wait "$pid"
