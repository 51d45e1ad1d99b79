#!/usr/bin/env bash
# The paper's machine: one node with 4 x H200. One teacher per GPU, plus a second QwQ-32B
# on the fourth GPU that only scores (cord.toml's teacher "qwq-32b-scorer"):
#
#   GPU 0  DeepSeek-R1-Distill-Qwen-32B   :8001  propose
#   GPU 1  QwQ-32B                        :8002  propose
#   GPU 2  Phi-4-reasoning-plus           :8003  propose
#   GPU 3  QwQ-32B                        :8004  score
#
# Logs go to $LOG_DIR (default ./vllm-logs). Waits until every server answers /v1/models,
# then keeps running until interrupted (Ctrl-C stops all four).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LOG_DIR="${LOG_DIR:-./vllm-logs}"
READY_TIMEOUT="${READY_TIMEOUT:-1800}"
mkdir -p "$LOG_DIR"

pids=()
stop_all() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait || true
}
trap stop_all EXIT INT TERM

start() {  # name gpu port script
    local name="$1" gpu="$2" port="$3" script="$4"
    GPUS="$gpu" PORT="$port" TP=1 "$here/$script" >"$LOG_DIR/$name.log" 2>&1 &
    pids+=("$!")
    echo "started $name on GPU $gpu, port $port (log $LOG_DIR/$name.log)"
}

start r1-distill-qwen-32b 0 8001 serve-r1-distill-qwen-32b.sh
start qwq-32b 1 8002 serve-qwq-32b.sh
start phi-4-reasoning-plus 2 8003 serve-phi-4-reasoning-plus.sh
start qwq-32b-scorer 3 8004 serve-qwq-32b.sh

deadline=$(( SECONDS + READY_TIMEOUT ))
for port in 8001 8002 8003 8004; do
    until curl -fsS "http://127.0.0.1:$port/v1/models" >/dev/null 2>&1; do
        if (( SECONDS > deadline )); then
            echo "port $port not ready after ${READY_TIMEOUT}s; see $LOG_DIR" >&2
            exit 1
        fi
        sleep 5
    done
    echo "port $port ready"
done
echo "all teachers ready: cord-proxy serve --config $here/cord.toml"
wait
