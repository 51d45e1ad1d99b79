#!/usr/bin/env bash
# Set up everything (project venv, local CPU teacher, model) and run `cord-proxy up`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/cord-proxy up "$@"
