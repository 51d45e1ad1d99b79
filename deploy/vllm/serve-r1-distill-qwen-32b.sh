#!/usr/bin/env bash
# DeepSeek-R1-Distill-Qwen-32B (about 65 GB of bf16 weights): one H200 (TP=1), or two
# 80 GB GPUs (TP=2). Proposes steps. Port 8001 by default.
#
#   GPUS=0 deploy/vllm/serve-r1-distill-qwen-32b.sh            # one H200
#   GPUS=0,1 TP=2 deploy/vllm/serve-r1-distill-qwen-32b.sh     # two 80 GB GPUs
#
# GPUS has no default: each server needs its own GPUs (serve-all-4xh200.sh gives this one
# GPU 0). Other settings: serve-teacher.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export MODEL="${MODEL:-deepseek-ai/DeepSeek-R1-Distill-Qwen-32B}"
export NAME="${NAME:-DeepSeek-R1-Distill-Qwen-32B}"
export PORT="${PORT:-8001}"
export TP="${TP:-1}"
exec "$here/serve-teacher.sh"
