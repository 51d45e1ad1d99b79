#!/usr/bin/env bash
# Serve one teacher as a vLLM OpenAI-compatible server (the model's weights must be on disk
# or reachable by the Hugging Face hub from this machine). Written for vLLM 0.32.0: its
# `vllm serve` parser accepts every flag below (tests/deploy checks them with that parser),
# and it answers the prefix-cached scoring requests cord.toml's `score_method = "auto"`
# picks (README.md, "vLLM version").
#
#   MODEL=Qwen/QwQ-32B NAME=QwQ-32B PORT=8002 TP=1 GPUS=1 deploy/vllm/serve-teacher.sh
#
# Settings (environment):
#   MODEL         Hugging Face id or local folder of the weights           (required)
#   NAME          --served-model-name; cord.toml's `model` must match it   (required)
#   GPUS          CUDA_VISIBLE_DEVICES for this server: TP GPUs, e.g. "0"
#                 or "2,3"; "all" keeps what the environment shows          (required)
#   PORT          port of the OpenAI server                                 (default 8000)
#   HOST          address to bind; set the GPU node's private address only
#                 when the proxy runs elsewhere (README.md: "Exposure")     (default 127.0.0.1)
#   TP            --tensor-parallel-size: GPUs that hold one copy          (default 1)
#   MAX_MODEL_LEN context: >= thinking_budget + answer_budget = 20480,
#                 plus the question and the scoring suffix                  (default 24576)
#   GPU_MEM       --gpu-memory-utilization                                  (default 0.90)
#   MAX_NUM_SEQS  --max-num-seqs: sequences batched at once                 (default 64)
#   VLLM          the vllm command                                          (default vllm)
#   EXTRA_ARGS    more vllm arguments, word-split                           (default none)
#   VLLM_API_KEY  read by vLLM itself: requests to /v1 need this bearer key (default none)
#   CORD_PLUGIN   folder of cord-proxy's vLLM plugin (four files, standard library and vLLM
#                 only; copy it where the repository is not)   (default: this repository's)
set -euo pipefail

: "${MODEL:?set MODEL to the weights (Hugging Face id or folder)}"
: "${NAME:?set NAME to the served model name used in cord.toml}"
: "${GPUS:?set GPUS to the GPUs of this server, e.g. GPUS=0 (TP=1) or GPUS=2,3 (TP=2); GPUS=all keeps CUDA_VISIBLE_DEVICES as it is}"
PORT="${PORT:-8000}"
HOST="${HOST:-127.0.0.1}"
TP="${TP:-1}"
MAX_MODEL_LEN="${MAX_MODEL_LEN:-24576}"
GPU_MEM="${GPU_MEM:-0.90}"
MAX_NUM_SEQS="${MAX_NUM_SEQS:-64}"
VLLM="${VLLM:-vllm}"
CORD_PLUGIN="${CORD_PLUGIN:-$(cd "$(dirname "$0")/../../cord_proxy/local/vllm_plugin" && pwd)}"
if [[ ! -f "$CORD_PLUGIN/cord_forced_tokens.py" || ! -f "$CORD_PLUGIN/cord_spans.py" ]]; then
    echo "CORD_PLUGIN=$CORD_PLUGIN lacks cord_forced_tokens.py or cord_spans.py (cord_proxy/local/vllm_plugin)" >&2
    exit 2
fi
export PYTHONPATH="$CORD_PLUGIN${PYTHONPATH:+:$PYTHONPATH}"

if (( MAX_MODEL_LEN < 20480 )); then
    echo "MAX_MODEL_LEN=$MAX_MODEL_LEN is below 20480 (thinking 16384 + answer 4096)" >&2
    exit 2
fi
if [[ "$GPUS" != "all" ]]; then
    IFS=, read -r -a gpu_list <<<"$GPUS"
    if (( ${#gpu_list[@]} != TP )); then
        echo "GPUS=$GPUS lists ${#gpu_list[@]} GPU(s) but TP=$TP needs $TP: give one server its own GPUs" >&2
        exit 2
    fi
    export CUDA_VISIBLE_DEVICES="$GPUS"
fi

# shellcheck disable=SC2206  # EXTRA_ARGS is meant to be word-split
extra=(${EXTRA_ARGS:-})

# --enable-prefix-caching: every proposal and every cached scoring read of a step re-reads
#   the shared trace; the cache makes that nearly free.
# --generation-config vllm: ignore the model's generation_config.json, whose defaults would
#   otherwise apply to every sampling field the proxy leaves unset; the paper's sampling is
#   what cord.toml sends.
# --logprobs-mode raw_logprobs: vLLM 0.32's default, set so that nobody changes it by
#   accident: the cached scoring method reads the model's raw log-probabilities.
# --logits-processors: cord-proxy's forced reads, a round's candidates scored in one request
#   (README.md, "Scoring"); without it the proxy reads one token a prompt, as before.
# --middleware: cord-proxy's spans route, a round's prompts tokenized in one request
#   (README.md, "The spans route"); without it the proxy asks /tokenize a prompt a request.
exec "$VLLM" serve "$MODEL" \
    --served-model-name "$NAME" \
    --host "$HOST" \
    --port "$PORT" \
    --tensor-parallel-size "$TP" \
    --max-model-len "$MAX_MODEL_LEN" \
    --enable-prefix-caching \
    --generation-config vllm \
    --logprobs-mode raw_logprobs \
    --logits-processors cord_forced_tokens:ForcedTokens \
    --middleware cord_spans.spans_route \
    --gpu-memory-utilization "$GPU_MEM" \
    --max-num-seqs "$MAX_NUM_SEQS" \
    --dtype bfloat16 \
    ${extra[@]+"${extra[@]}"}
