#!/usr/bin/env bash
# QwQ-32B (about 65 GB of bf16 weights): one H200 (TP=1), or two 80 GB GPUs (TP=2).
# Proposes steps and is the paper's scorer ("meta-prover"). Port 8002 by default; a second
# copy on PORT=8004 gives scoring its own GPU (README.md, "Sizing").
#
#   GPUS=1 deploy/vllm/serve-qwq-32b.sh                        # the proposer
#   GPUS=3 PORT=8004 deploy/vllm/serve-qwq-32b.sh              # the scorer copy
#
# GPUS has no default: each server needs its own GPUs (serve-all-4xh200.sh gives the
# proposer GPU 1 and the scorer GPU 3). Other settings: serve-teacher.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export MODEL="${MODEL:-Qwen/QwQ-32B}"
export NAME="${NAME:-QwQ-32B}"
export PORT="${PORT:-8002}"
export TP="${TP:-1}"
exec "$here/serve-teacher.sh"
