#!/usr/bin/env bash
# Run the test suite: installs the project with its test tools into .venv when needed.
#   ./test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")"
scripts/ensure-venv.sh dev
scripts/system-deps.sh
exec "${VO_VENV:-.venv}/bin/python" -m pytest "$@"
