#!/usr/bin/env bash
# Serve one teacher as a vLLM OpenAI-compatible server (the model's weights must be on disk
# or reachable by the Hugging Face hub from this machine).
#
#   MODEL=Qwen/QwQ-32B NAME=QwQ-32B PORT=8002 TP=1 GPUS=1 deploy/vllm/serve-teacher.sh
#
# Settings (environment):
#   MODEL         Hugging Face id or local folder of the weights           (required)
#   NAME          --served-model-name; cord.toml's `model` must match it   (required)
#   PORT          port of the OpenAI server                                 (default 8000)
#   HOST          address to bind; 0.0.0.0 when the proxy runs elsewhere   (default 0.0.0.0)
#   TP            --tensor-parallel-size: GPUs that hold one copy          (default 1)
#   GPUS          CUDA_VISIBLE_DEVICES for this server, e.g. "0" or "2,3"  (default: all)
#   MAX_MODEL_LEN context: >= thinking_budget + answer_budget = 20480,
#                 plus the question and the scoring suffix                  (default 24576)
#   GPU_MEM       --gpu-memory-utilization                                  (default 0.90)
#   MAX_NUM_SEQS  --max-num-seqs: sequences batched at once                 (default 64)
#   VLLM          the vllm command                                          (default vllm)
#   EXTRA_ARGS    more vllm arguments, word-split                           (default none)
set -euo pipefail

: "${MODEL:?set MODEL to the weights (Hugging Face id or folder)}"
: "${NAME:?set NAME to the served model name used in cord.toml}"
PORT="${PORT:-8000}"
HOST="${HOST:-0.0.0.0}"
TP="${TP:-1}"
MAX_MODEL_LEN="${MAX_MODEL_LEN:-24576}"
GPU_MEM="${GPU_MEM:-0.90}"
MAX_NUM_SEQS="${MAX_NUM_SEQS:-64}"
VLLM="${VLLM:-vllm}"

if (( MAX_MODEL_LEN < 20480 )); then
    echo "MAX_MODEL_LEN=$MAX_MODEL_LEN is below 20480 (thinking 16384 + answer 4096)" >&2
    exit 2
fi
if [[ -n "${GPUS:-}" ]]; then
    export CUDA_VISIBLE_DEVICES="$GPUS"
fi

# shellcheck disable=SC2206  # EXTRA_ARGS is meant to be word-split
extra=(${EXTRA_ARGS:-})

# --enable-prefix-caching: every proposal of a step re-reads the shared trace; the cache
# makes that nearly free. (Scoring requests with prompt_logprobs do not read the cache.)
exec "$VLLM" serve "$MODEL" \
    --served-model-name "$NAME" \
    --host "$HOST" \
    --port "$PORT" \
    --tensor-parallel-size "$TP" \
    --max-model-len "$MAX_MODEL_LEN" \
    --enable-prefix-caching \
    --gpu-memory-utilization "$GPU_MEM" \
    --max-num-seqs "$MAX_NUM_SEQS" \
    --dtype bfloat16 \
    ${extra[@]+"${extra[@]}"}
