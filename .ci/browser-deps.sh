#!/usr/bin/env bash
# Installs what the browser test (test/browser.test.ts) needs: Debian's chromium at
# /usr/bin/chromium (playwright-core drives it; it comes with the dev dependencies, and
# `npx playwright install` is not used: it downloads a browser of its own).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  echo "browser-deps: $(/usr/bin/chromium --version 2>/dev/null || echo chromium) already installed"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -y
$SUDO apt-get install -y --no-install-recommends chromium
/usr/bin/chromium --version || true
