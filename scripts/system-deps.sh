#!/usr/bin/env bash
# Install the Debian packages the test suite uses, when missing and when we can (root + apt):
#   espeak-ng   real speech for VAD and end-to-end voice tests
# Without them the tests that need them skip with a reason; CI runs this, so there they run.
set -euo pipefail
packages=()
command -v espeak-ng >/dev/null 2>&1 || packages+=(espeak-ng)
[ ${#packages[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: cannot install ${packages[*]} (needs root and apt-get); tests that need them skip" >&2
  exit 0
fi
echo "installing ${packages[*]}" >&2
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
