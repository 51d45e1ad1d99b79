#!/usr/bin/env bash
# The paper's machine: one node with 4 x H200. One teacher per GPU, plus a second QwQ-32B
# on the fourth GPU that only scores (cord.toml's teacher "qwq-32b-scorer"):
#
#   GPU 0  DeepSeek-R1-Distill-Qwen-32B   :8001  propose
#   GPU 1  QwQ-32B                        :8002  propose
#   GPU 2  Phi-4-reasoning-plus           :8003  propose
#   GPU 3  QwQ-32B                        :8004  score
#
# 1. Fetches the weights first (`hf download`, about 160 GB in all), so that the readiness
#    timer below counts loading, not downloading. PREFETCH=0 skips it; a *_MODEL that is a
#    local folder is not fetched. After a fetch the servers start with HF_HUB_OFFLINE=1
#    (unless it is set), so they read the local copy.
# 2. Starts the four servers (serve-teacher.sh; logs in $LOG_DIR) and waits until each
#    answers GET /health, which needs no key even when the servers run with an API key. A
#    server that exits while the others load stops the whole set at once, with its log.
# 3. Keeps running until interrupted (Ctrl-C stops all four), or until one server exits:
#    then it stops the others and exits non-zero, since a set with a teacher missing fails.
#
# Environment: LOG_DIR (./vllm-logs), READY_TIMEOUT (1800 s, counted after the fetch),
# READY_POLL (5 s: how often it checks the servers), PREFETCH (1), HF (the Hugging Face
# CLI: hf), R1_MODEL, QWQ_MODEL, PHI_MODEL (Hugging Face ids or folders), and everything
# serve-teacher.sh reads (HOST, MAX_MODEL_LEN, VLLM, EXTRA_ARGS, VLLM_API_KEY, ...).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LOG_DIR="${LOG_DIR:-./vllm-logs}"
READY_TIMEOUT="${READY_TIMEOUT:-1800}"
READY_POLL="${READY_POLL:-5}"
PREFETCH="${PREFETCH:-1}"
HF="${HF:-hf}"
R1_MODEL="${R1_MODEL:-deepseek-ai/DeepSeek-R1-Distill-Qwen-32B}"
QWQ_MODEL="${QWQ_MODEL:-Qwen/QwQ-32B}"
PHI_MODEL="${PHI_MODEL:-microsoft/Phi-4-reasoning-plus}"
mkdir -p "$LOG_DIR"

# --- 1. the weights, before any timer --------------------------------------------------
if [[ "$PREFETCH" == 1 ]]; then
    if ! command -v "$HF" >/dev/null; then
        echo "$HF not found: pip install -U huggingface_hub (it installs with vLLM), set HF, or PREFETCH=0" >&2
        exit 1
    fi
    for model in "$R1_MODEL" "$QWQ_MODEL" "$PHI_MODEL"; do
        if [[ -d "$model" ]]; then
            echo "weights of $model: a local folder"
            continue
        fi
        echo "fetching $model (log $LOG_DIR/download.log)"
        if ! "$HF" download "$model" >>"$LOG_DIR/download.log" 2>&1; then
            echo "could not fetch $model; see $LOG_DIR/download.log" >&2
            exit 1
        fi
    done
    export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
fi

# --- 2. the servers --------------------------------------------------------------------
names=()
ports=()
pids=()
# shellcheck disable=SC2317,SC2329  # run by the EXIT trap below
stop_all() {
    local pid
    for pid in ${pids[@]+"${pids[@]}"}; do
        kill "$pid" 2>/dev/null || true
    done
    wait || true
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start() {  # name gpu port script model
    local name="$1" gpu="$2" port="$3" script="$4" model="$5"
    MODEL="$model" GPUS="$gpu" PORT="$port" TP=1 "$here/$script" >"$LOG_DIR/$name.log" 2>&1 &
    pids+=("$!")
    names+=("$name")
    ports+=("$port")
    echo "started $name on GPU $gpu, port $port (log $LOG_DIR/$name.log)"
}

# the first server that is no longer running, as its index; none: returns 1
exited_server() {
    local i
    for i in "${!pids[@]}"; do
        if ! kill -0 "${pids[$i]}" 2>/dev/null; then
            echo "$i"
            return 0
        fi
    done
    return 1
}

# sleep, and let Ctrl-C or a TERM in at once (a trap runs when `wait` is interrupted)
pause() {
    sleep "$READY_POLL" &
    wait "$!" || true
}

report_exit() {  # index, what happened
    local i="$1"
    echo "${names[$i]} (port ${ports[$i]}) $2; the last lines of $LOG_DIR/${names[$i]}.log:" >&2
    tail -n 20 "$LOG_DIR/${names[$i]}.log" >&2 || true
}

start r1-distill-qwen-32b 0 8001 serve-r1-distill-qwen-32b.sh "$R1_MODEL"
start qwq-32b 1 8002 serve-qwq-32b.sh "$QWQ_MODEL"
start phi-4-reasoning-plus 2 8003 serve-phi-4-reasoning-plus.sh "$PHI_MODEL"
start qwq-32b-scorer 3 8004 serve-qwq-32b.sh "$QWQ_MODEL"

check_host="${HOST:-127.0.0.1}"
if [[ "$check_host" == "0.0.0.0" ]]; then
    check_host=127.0.0.1
fi
deadline=$(( SECONDS + READY_TIMEOUT ))
for i in "${!ports[@]}"; do
    until curl -fsS --max-time 5 "http://$check_host:${ports[$i]}/health" >/dev/null 2>&1; do
        if gone="$(exited_server)"; then
            report_exit "$gone" "exited before the set was ready"
            exit 1
        fi
        if (( SECONDS > deadline )); then
            echo "${names[$i]} (port ${ports[$i]}) not ready after ${READY_TIMEOUT}s; see $LOG_DIR" >&2
            exit 1
        fi
        pause
    done
    echo "${names[$i]} ready on port ${ports[$i]}"
done
echo "all teachers ready: cord-proxy serve --config $here/cord.toml"

# --- 3. stay up while all four run -------------------------------------------------------
until gone="$(exited_server)"; do
    pause
done
report_exit "$gone" "exited; stopping the others"
exit 1
