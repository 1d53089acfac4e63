#!/usr/bin/env bash
# Install headless Chromium for the console's browser tests (tests/console/test_browser.py),
# when missing and when we can (root + apt):  chromium fonts-dejavu-core
# Playwright (the `dev` extra) drives it with executable_path=/usr/bin/chromium; its pip wheel
# carries its own driver, so `playwright install` (a browser download) is never needed.
# Without chromium those tests skip with a reason; CI (.ci/run) runs this, so there they run.
set -euo pipefail
packages=()
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || packages+=(fonts-dejavu-core)
[ ${#packages[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: cannot install ${packages[*]} (needs root and apt-get); browser tests skip" >&2
  exit 0
fi
echo "installing ${packages[*]}" >&2
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
