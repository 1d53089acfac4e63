#!/usr/bin/env bash
# Run voice-orchestrator: installs itself into .venv on first use, then serves the voice API
# (port 11400) and the console (127.0.0.1:8766) until Ctrl-C or SIGTERM.
#   ./start.sh [--profile NAME] [--config FILE] [--log-level LEVEL]
# PersonaPlex and VibeVoice live in virtual environments of their own (they pin an older torch,
# an older transformers); make them with
#   ./start.sh install personaplex --source PATH [--weights] [--system-deps]
#   ./start.sh install vibevoice --source PATH [--weights]   (PATH: a microsoft/VibeVoice checkout)
# The gateway (the always-on front door that starts and stops the GPU host, port 11500):
#   ./start.sh gateway [--config FILE]
set -euo pipefail
cd "$(dirname "$0")"
python="${VO_VENV:-.venv}/bin/python"
if [ "${1:-}" = gateway ]; then
  shift
  scripts/ensure-venv.sh gateway  # adds the cloud providers' SDKs
  exec "$python" -m orchestrator gateway "$@"
fi
scripts/ensure-venv.sh run
if [ "${1:-}" = install ]; then
  shift
  exec "$python" -m orchestrator install "$@"
fi
# exec: the server becomes this process, so signals reach it and nothing is left behind.
exec "$python" -m orchestrator serve "$@"
