#!/usr/bin/env bash
# The browser tests drive Debian's chromium through Playwright (no browser download).
set -uo pipefail
if command -v chromium >/dev/null || [ -x /usr/bin/chromium ]; then exit 0; fi
echo "chromium is missing; installing Debian's chromium package for the browser tests..."
if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo -n"; else
  echo "Install chromium (apt-get install chromium) and re-run." >&2; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq chromium >/dev/null \
  || { echo "Could not install chromium: apt-get install chromium, then re-run." >&2; exit 1; }
echo "chromium installed: $(chromium --version 2>/dev/null)"
