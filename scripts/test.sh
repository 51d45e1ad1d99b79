#!/usr/bin/env bash
# Set up what is missing and run the whole test suite. The tests start the real local
# teacher themselves (installed and prepared on first use, then cached in CORD_HOME).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
