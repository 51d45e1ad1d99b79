#!/usr/bin/env bash
# Start vLLM Router (vllm-router 0.1.17, which scripts/setup.sh installs into the repository's
# .venv) in front of one teacher model's vLLM replicas. Point the teacher's base_url at
# http://HOST:PORT/v1.
#
#   deploy/router/serve-router.sh http://gpu-1:8000 http://gpu-2:8000
#   CORD_ROUTER_PORT=8600 CORD_ROUTER_POLICY=round_robin deploy/router/serve-router.sh URL...
#
# Environment:
#   CORD_ROUTER_HOST             address to bind (127.0.0.1). As launched here the router
#                                admits every client and passes the client's Authorization
#                                header on to the replicas (checked with 0.1.17). Bind another
#                                address only behind a firewall that admits the proxy hosts
#                                alone (deploy/vllm/README.md, "Exposure").
#   CORD_ROUTER_PORT             port (8500)
#   CORD_ROUTER_POLICY           consistent_hash (see below), round_robin, cache_aware, ...
#   CORD_ROUTER_METRICS_PORT     the router's own Prometheus page (29000; give each router on
#                                one host its own); it binds 127.0.0.1
#   CORD_ROUTER_TIMEOUT          seconds one request may take (3600: a long step or a read)
#   CORD_ROUTER_STARTUP_TIMEOUT  seconds to wait for every replica to answer /health at start
#                                (3600). The router exits when they do not: a cold start of a
#                                32B replica (about 65 GB of weights) takes many minutes, and
#                                vllm-router's own default, 600 s, is too short.
#   CORD_ROUTER_MAX_ATTEMPTS     tries of one request, the first included (1). vllm-router's
#                                --retry-max-retries counts tries: its default 5 would multiply
#                                cord-proxy's own retries (the teacher's max_retries, with
#                                backoff and a circuit breaker) by five.
#   CORD_ROUTER_LOG_LEVEL        warning
#   VLLM_ROUTER                  the binary (vllm-router on PATH, else the repository's .venv)
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
repo_venv="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/.venv/bin/vllm-router"
if [[ -n "${VLLM_ROUTER:-}" ]]; then
  ROUTER="$VLLM_ROUTER"
elif command -v vllm-router >/dev/null; then
  ROUTER=vllm-router
else
  ROUTER="$repo_venv"
fi
if ! command -v "$ROUTER" >/dev/null; then
  echo "[router] $ROUTER not found: bash scripts/setup.sh installs vllm-router 0.1.17 into .venv (or set VLLM_ROUTER)" >&2
  exit 1
fi

exec "$ROUTER" \
  --host "${CORD_ROUTER_HOST:-127.0.0.1}" \
  --port "${CORD_ROUTER_PORT:-8500}" \
  --policy "${CORD_ROUTER_POLICY:-consistent_hash}" \
  --worker-urls "$@" \
  --prometheus-port "${CORD_ROUTER_METRICS_PORT:-29000}" \
  --request-timeout-secs "${CORD_ROUTER_TIMEOUT:-3600}" \
  --worker-startup-timeout-secs "${CORD_ROUTER_STARTUP_TIMEOUT:-3600}" \
  --worker-startup-check-interval 2 \
  --retry-max-retries "${CORD_ROUTER_MAX_ATTEMPTS:-1}" \
  --health-check-interval-secs 10 \
  --health-check-timeout-secs 30 \
  --log-level "${CORD_ROUTER_LOG_LEVEL:-warning}"
