#!/usr/bin/env bash
# Run voice-orchestrator: installs itself into .venv on first use, then serves the voice API
# (port 11400) and the console (127.0.0.1:8766) until Ctrl-C or SIGTERM.
#   ./start.sh [--profile NAME] [--config FILE] [--log-level LEVEL]
set -euo pipefail
cd "$(dirname "$0")"
scripts/ensure-venv.sh run
# exec: the server becomes this process, so signals reach it and nothing is left behind.
exec "${VO_VENV:-.venv}/bin/python" -m orchestrator serve "$@"
