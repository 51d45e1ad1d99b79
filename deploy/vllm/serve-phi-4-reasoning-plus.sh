#!/usr/bin/env bash
# Phi-4-reasoning-plus (14B, about 30 GB of bf16 weights; 32k context): one GPU (TP=1).
# Proposes steps. Port 8003 by default. On a 48 GB GPU its KV cache holds only about two
# full-length (20k-token) traces, fewer than the four live traces of one B = 4 decode
# (README.md, "Sizing"); an 80 GB GPU or an H200 holds a decode's worth and more.
#
#   GPUS=2 deploy/vllm/serve-phi-4-reasoning-plus.sh
#
# GPUS has no default: each server needs its own GPUs (serve-all-4xh200.sh gives this one
# GPU 2). Other settings: serve-teacher.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export MODEL="${MODEL:-microsoft/Phi-4-reasoning-plus}"
export NAME="${NAME:-Phi-4-reasoning-plus}"
export PORT="${PORT:-8003}"
export TP="${TP:-1}"
exec "$here/serve-teacher.sh"
