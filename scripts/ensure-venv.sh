#!/usr/bin/env bash
# Create .venv (or $VO_VENV) if missing and install the project into it, once per change of
# pyproject.toml or of this script. Usage: scripts/ensure-venv.sh [run|gateway|dev]
# (gateway adds the cloud providers' SDKs; dev adds them and the test tools)
set -euo pipefail
cd "$(dirname "$0")/.."

extras=${1:-run}
venv=${VO_VENV:-.venv}
python=${PYTHON:-python3}

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: voice-orchestrator needs Python 3.11 or newer ($python is $("$python" -V 2>&1))" >&2
  exit 2
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "creating virtual environment in $venv" >&2
  "$python" -m venv "$venv"
fi

want=$(cat pyproject.toml scripts/ensure-venv.sh | sha256sum | cut -d' ' -f1)
stamp="$venv/.vo-installed-$extras"
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi

echo "installing voice-orchestrator ($extras) into $venv; this takes a few minutes once" >&2
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" --upgrade pip
# torch is pinned in pyproject.toml. VO_TORCH_INDEX_URL picks a wheel index (a CPU-only
# index on hosts without a GPU keeps the install small).
if [ -n "${VO_TORCH_INDEX_URL:-}" ]; then
  "${pip[@]}" --index-url "$VO_TORCH_INDEX_URL" torch==2.13.0
fi
if [ "$extras" = dev ]; then
  "${pip[@]}" -e '.[dev]'
  # PyPI's moshi builds the tiny PersonaPlex models of the tests. It pins an older torch, so it
  # goes in without its dependencies (sphn, sentencepiece and einops come with the dev extra).
  # In CI its absence is an error: the PersonaPlex tests must run there, not skip.
  if ! "${pip[@]}" --no-deps 'moshi==0.2.13'; then
    echo "warning: moshi not installed: the PersonaPlex process tests will be skipped" >&2
    if [ -n "${CI:-}" ]; then exit 1; fi
  fi
  echo "$want" > "$venv/.vo-installed-run"
  echo "$want" > "$venv/.vo-installed-gateway"
elif [ "$extras" = gateway ]; then
  "${pip[@]}" -e '.[gateway]'
  echo "$want" > "$venv/.vo-installed-run"
else
  "${pip[@]}" -e .
fi
echo "$want" > "$stamp"
