#!/usr/bin/env bash
# Set up what is missing and run the whole test suite: the project's venv, the data tools'
# venv (the client examples' tests), Chromium and Playwright (the page's tests). Each step is
# idempotent. The tests start the real local teacher themselves (installed and prepared on
# first use, then cached in CORD_HOME).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/tools_venv.sh >/dev/null
bash scripts/ui_deps.sh
exec .venv/bin/python -m pytest -q --durations=25 "$@"
