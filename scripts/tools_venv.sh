#!/usr/bin/env bash
# Build (once) the cached virtualenv of the data tools the examples in clients/ use
# (Curator, distilabel), apart from the project's own .venv: their pins differ from ours.
# Prints the venv's python. Reused while scripts/tools-requirements.txt is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
home="${CORD_HOME:-$HOME/.cache/cord-proxy}"
stamp="$(sha256sum scripts/tools-requirements.txt | cut -c1-12)"
venv="$home/tools-venv-$stamp"
mkdir -p "$home"
exec 9>"$home/tools-venv.lock"
flock 9
if [[ ! -f "$venv/.complete" ]]; then
  echo "[tools] installing Curator and distilabel into $venv" >&2
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/pip" install --quiet --progress-bar off -r scripts/tools-requirements.txt >&2
  "$venv/bin/python" -c "import bespokelabs.curator, distilabel, openai" >&2
  touch "$venv/.complete"
fi
echo "$venv/bin/python"
