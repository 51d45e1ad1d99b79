#!/usr/bin/env bash
# Lint and type checks that CI runs before the tests: ruff, ruff format, mypy --strict.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
.venv/bin/ruff check cord_proxy tests bench clients scripts
.venv/bin/ruff format --check cord_proxy tests bench clients scripts
.venv/bin/mypy --strict cord_proxy bench
echo "[lint] ruff, ruff format and mypy --strict are clean"
