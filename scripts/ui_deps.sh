#!/usr/bin/env bash
# What the web page's browser tests need: Debian's Chromium and Playwright for Python.
# Playwright drives the system Chromium through executable_path; it downloads no browser.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
  echo "[ui-deps] installing chromium and chromium-driver"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium chromium-driver >/dev/null
fi
bash scripts/setup.sh
.venv/bin/python -c "import playwright" 2>/dev/null || .venv/bin/pip install --quiet --progress-bar off 'playwright>=1.45'
chromium --version 2>/dev/null
