#!/usr/bin/env bash
# Headless Chromium for the test that opens the HTML report (Debian's `chromium` package).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium (for the report test)"
  DEBIAN_FRONTEND=noninteractive apt-get -qq update
  DEBIAN_FRONTEND=noninteractive apt-get -qq install -y --no-install-recommends chromium >/dev/null
else
  echo "the report test needs headless Chromium: run 'sudo apt-get install chromium' (Debian/Ubuntu)" >&2
  exit 1
fi
