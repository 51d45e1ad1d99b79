#!/usr/bin/env bash
# QwQ-32B (about 65 GB of bf16 weights): one H200 (TP=1), or two 80 GB GPUs (TP=2).
# Proposes steps and is the paper's scorer ("meta-prover"). Port 8002 by default; run a
# second copy on PORT=8004 to give scoring its own GPU (see README.md).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export MODEL="${MODEL:-Qwen/QwQ-32B}"
export NAME="${NAME:-QwQ-32B}"
export PORT="${PORT:-8002}"
export TP="${TP:-1}"
exec "$here/serve-teacher.sh"
