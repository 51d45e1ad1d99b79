"""Write a reasoning dataset with Bespoke Curator, with cord-proxy as the OpenAI endpoint.

    pip install bespokelabs-curator        # checked with 0.1.31
    .venv/bin/cord-proxy up                # or: .venv/bin/cord-proxy serve --config cord.toml
    python clients/curator_script.py --base-url http://127.0.0.1:8400/v1 \\
        --input problems.jsonl --output curated.jsonl [--cord '{"beam_width": 2}']

Input lines: ``{"id", "question", "answer"}``. Each row's answer travels as
``cord.reference_answer`` through Curator's per-row ``generation_params`` column (a JSON
string merged into that row's request body). ``return_completions_object`` hands `parse` the
whole chat completion, so the trace (``message.reasoning_content``) and the provenance
(``cord``) are kept next to the answer.

Curator caches responses under ``$CURATOR_CACHE_DIR`` (default ``~/.cache/curator``): a rerun
of the same input reuses them, which is how an interrupted run resumes. Curator counts
tokens with tiktoken, which downloads its encodings on first use: the script points
``TIKTOKEN_CACHE_DIR`` at the copies litellm ships, so it runs offline, and turns Curator's
telemetry off (``TELEMETRY_ENABLED=false``).

``--batch`` uses Curator's batch mode instead: Curator uploads the requests as a file and runs
them as one OpenAI batch (``/v1/files``, ``/v1/batches``) on the proxy, polling every
``--batch-check-interval`` seconds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any


def run_offline() -> None:
    """Nothing leaves the machine but the calls to the proxy: telemetry off, and tiktoken's
    encodings read from the copies litellm ships (tiktoken downloads them on first use)."""
    os.environ.setdefault("TELEMETRY_ENABLED", "false")  # Curator's usage events (PostHog)
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        return
    spec = importlib.util.find_spec("litellm")
    for root in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(root) / "litellm_core_utils" / "tokenizers"
        if folder.is_dir():
            os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
            return


run_offline()

from bespokelabs import curator  # noqa: E402
from datasets import Dataset  # noqa: E402


class CordReasoner(curator.LLM):
    """One chat completion per row; `parse` keeps the trace, the answer and the score."""

    return_completions_object = True

    def prompt(self, row: dict[str, Any]) -> list[dict[str, str]]:
        return [{"role": "user", "content": row["question"]}]

    def parse(self, row: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
        message = response["choices"][0]["message"]
        cord = response.get("cord") or {}
        return {
            "id": row["id"],
            "question": row["question"],
            "reference_answer": row["answer"],
            "reasoning": message.get("reasoning_content") or "",
            "answer": message.get("content") or "",
            "score": cord.get("score"),
            "finish_reason": response["choices"][0].get("finish_reason"),
            "request_id": response.get("id"),
        }


def rows_of(path: str, cord: dict[str, Any]) -> Dataset:
    rows = []
    with open(path, encoding="utf-8") as file:
        for line in file:
            if not line.strip():
                continue
            problem = json.loads(line)
            options = {**cord, "reference_answer": str(problem["answer"])}
            rows.append(
                {
                    "id": str(problem["id"]),
                    "question": problem["question"],
                    "answer": str(problem["answer"]),
                    "generation_params": json.dumps({"cord": options}),
                }
            )
    return Dataset.from_list(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8400/v1")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("CORD_API_KEY") or os.environ.get("OPENAI_API_KEY") or "none",
        help="the proxy's key (default: $CORD_API_KEY, else $OPENAI_API_KEY)",
    )
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--model", default="cord", help="the ensemble")
    parser.add_argument("--cord", default="{}", help="cord options for every row (JSON)")
    parser.add_argument("--requests-per-minute", type=int, default=60)
    parser.add_argument("--batch", action="store_true", help="run as one OpenAI batch")
    parser.add_argument("--batch-check-interval", type=int, default=5, help="seconds")
    args = parser.parse_args(argv)

    params: dict[str, Any] = {
        "base_url": args.base_url,
        "api_key": args.api_key,
        "max_retries": 3,
        "require_all_responses": False,
        # an answer cut by the ensemble's answer budget ("length") is still a trace to keep
        "invalid_finish_reasons": ["content_filter"],
    }
    if args.batch:
        params.update(batch_check_interval=args.batch_check_interval, completion_window="24h")
    else:
        params.update(
            max_requests_per_minute=args.requests_per_minute,
            max_tokens_per_minute=10_000_000,
            request_timeout=3600,
        )
    reasoner = CordReasoner(
        model_name=args.model, backend="openai", batch=args.batch, backend_params=params
    )
    result = reasoner(rows_of(args.input, json.loads(args.cord)))
    dataset = result.dataset if hasattr(result, "dataset") else result
    dataset.to_json(args.output, lines=True)
    print(f"wrote {len(dataset)} rows to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
