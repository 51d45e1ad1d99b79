#!/usr/bin/env bash
# Phi-4-reasoning-plus (14B, about 30 GB of bf16 weights; 32k context): one GPU of 48 GB
# or more (TP=1). Proposes steps. Port 8003 by default.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export MODEL="${MODEL:-microsoft/Phi-4-reasoning-plus}"
export NAME="${NAME:-Phi-4-reasoning-plus}"
export PORT="${PORT:-8003}"
export TP="${TP:-1}"
exec "$here/serve-teacher.sh"
