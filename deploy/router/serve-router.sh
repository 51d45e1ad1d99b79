#!/usr/bin/env bash
# Start vLLM Router (pip install vllm-router==0.1.17) in front of one teacher model's vLLM
# replicas. Point the teacher's base_url at http://HOST:PORT/v1.
#
#   deploy/router/serve-router.sh http://gpu-1:8000 http://gpu-2:8000
#   CORD_ROUTER_PORT=8600 CORD_ROUTER_POLICY=round_robin deploy/router/serve-router.sh URL...
#
# Environment: CORD_ROUTER_HOST (127.0.0.1), CORD_ROUTER_PORT (8500), CORD_ROUTER_POLICY
# (consistent_hash), CORD_ROUTER_METRICS_PORT (29000: the router's own Prometheus page; give
# each router on one host its own), CORD_ROUTER_TIMEOUT (3600 s), VLLM_ROUTER (the binary).
#
# Replica URLs are server roots (no /v1). The default policy, consistent_hash, sends every
# call carrying one X-Session-ID to one replica; cord-proxy sends one such key per beam
# (cord_proxy/teachers/affinity.py), so a beam's proposals, scores and answer find its
# trace in that replica's prefix cache (bench/router.py measures it against round_robin).
# /v1/completions, /v1/chat/completions, /v1/models, /tokenize and /detokenize all pass.
set -euo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 REPLICA_URL [REPLICA_URL ...]" >&2
  exit 2
fi
ROUTER="${VLLM_ROUTER:-vllm-router}"
if ! command -v "$ROUTER" >/dev/null; then
  echo "[router] $ROUTER not found: pip install vllm-router==0.1.17 (or set VLLM_ROUTER)" >&2
  exit 1
fi

exec "$ROUTER" \
  --host "${CORD_ROUTER_HOST:-127.0.0.1}" \
  --port "${CORD_ROUTER_PORT:-8500}" \
  --policy "${CORD_ROUTER_POLICY:-consistent_hash}" \
  --worker-urls "$@" \
  --prometheus-port "${CORD_ROUTER_METRICS_PORT:-29000}" \
  --request-timeout-secs "${CORD_ROUTER_TIMEOUT:-3600}" \
  --worker-startup-check-interval 2 \
  --health-check-interval-secs 10 \
  --health-check-timeout-secs 30 \
  --log-level "${CORD_ROUTER_LOG_LEVEL:-warning}"
