#!/usr/bin/env bash
# Create the project's virtualenv (.venv) with cord-proxy and its dev tools. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  echo "[setup] creating .venv"
  "$PYTHON" -m venv .venv
fi
echo "[setup] installing cord-proxy with its dev and ray extras and vllm-router into .venv"
.venv/bin/pip install --quiet --progress-bar off -e '.[dev,ray]' vllm-router==0.1.17 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c "import cord_proxy, openai, pytest, ray.data" && [[ -x .venv/bin/vllm-router ]] || {
  echo "[setup] the install failed: check that the package registry is reachable and rerun" >&2
  exit 1
}
