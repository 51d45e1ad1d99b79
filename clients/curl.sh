#!/usr/bin/env bash
# One CoRD trace with curl. Usage: bash clients/curl.sh [BASE_URL]
# The key: $CORD_API_KEY, else $OPENAI_API_KEY (any string when the proxy has no api_keys).
set -euo pipefail
BASE_URL="${1:-http://127.0.0.1:8400/v1}"
curl -sS --fail-with-body "$BASE_URL/chat/completions" \
  -H "Content-Type: application/json" \
  -H "Authorization: Bearer ${CORD_API_KEY:-${OPENAI_API_KEY:-none}}" \
  -d '{
    "model": "cord",
    "messages": [{"role": "user", "content": "What is 12 + 30?"}],
    "cord": {"reference_answer": "42", "max_steps": 2}
  }'
echo
