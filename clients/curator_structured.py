"""Structured answers with Bespoke Curator, with cord-proxy as the OpenAI endpoint.

    pip install bespokelabs-curator        # checked with 0.1.31
    .venv/bin/cord-proxy up                # or: .venv/bin/cord-proxy serve --config cord.toml
    python clients/curator_structured.py --base-url http://127.0.0.1:8400/v1 \\
        --input problems.jsonl --output structured.jsonl [--cord '{"beam_width": 2}']

Input lines: ``{"id", "question", "answer"}``. Stock ``curator.LLM`` with a pydantic
``response_format``: Curator sends it as a ``json_schema`` response format, cord-proxy
constrains the final answer to it (never the reasoning), and `parse` gets the validated
`Solution`. Before the first row Curator checks that the endpoint can do structured output
(an ``openai`` ``parse`` call of its own), and reads the proxy's ``x-ratelimit-*`` headers
to size its request rate.

Curator hands `parse` either the parsed object or the whole completion, not both, so the
rows here hold the answer; the trace is in the proxy's dataset (``[dataset] path``), and
`clients/curator_script.py` keeps it in the rows. Each row's reference answer travels as
``cord.reference_answer`` through Curator's per-row ``generation_params`` column, as there.

Curator caches responses under ``$CURATOR_CACHE_DIR`` (default ``~/.cache/curator``); the
script points ``TIKTOKEN_CACHE_DIR`` at the encodings litellm ships, so it runs offline, and
turns Curator's telemetry off (``TELEMETRY_ENABLED=false``).
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
from pydantic import BaseModel, Field  # noqa: E402


class Solution(BaseModel):
    """The final answer's shape: what the answer teacher must write, as JSON. The bound
    keeps a runaway string (small models write one) within the answer budget."""

    answer: str = Field(max_length=32, description="the final answer alone")


class StructuredReasoner(curator.LLM):
    """One chat completion per row, its answer a `Solution`."""

    response_format = Solution

    def prompt(self, row: dict[str, Any]) -> list[dict[str, str]]:
        return [{"role": "user", "content": row["question"]}]

    def parse(self, row: dict[str, Any], response: Solution) -> dict[str, Any]:
        return {
            "id": row["id"],
            "question": row["question"],
            "reference_answer": row["answer"],
            "answer": response.answer,
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
    args = parser.parse_args(argv)

    params: dict[str, Any] = {
        "base_url": args.base_url,
        "api_key": args.api_key,
        "max_retries": 3,
        "require_all_responses": False,
        "request_timeout": 3600,
    }
    reasoner = StructuredReasoner(model_name=args.model, backend="openai", backend_params=params)
    result = reasoner(rows_of(args.input, json.loads(args.cord)))
    dataset = result.dataset if hasattr(result, "dataset") else result
    dataset.to_json(args.output, lines=True)
    print(f"wrote {len(dataset)} rows to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
