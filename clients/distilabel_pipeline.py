"""Write a reasoning dataset with distilabel, with cord-proxy as the OpenAI endpoint.

    pip install "distilabel[openai]"       # checked with 1.5.3
    .venv/bin/cord-proxy up                # or: .venv/bin/cord-proxy serve --config cord.toml
    python clients/distilabel_pipeline.py --base-url http://127.0.0.1:8400/v1 \\
        --input problems.jsonl --output distilabel.jsonl [--cord '{"beam_width": 2}']

Input lines: ``{"id", "question", ...}``. The pipeline is distilabel's stock path: the
`TextGeneration` task with the stock `OpenAILLM`, no subclass. distilabel sends the same
generation settings for every row, so a row's reference answer cannot travel with it: the
decode runs in step mode (each step scored by the teachers, no reference answer). The `cord`
options go in every request through ``generation_kwargs={"extra_body": {"cord": {...}}}``,
which distilabel's `OpenAILLM` hands to the openai SDK, and the SDK merges into the body.

They ask for ``reasoning_format: inline``, so the completion's content is
``<think>\\n{trace}\\n</think>\\n\\n{answer}``: distilabel keeps only the content, and a
small step splits it into ``reasoning`` and ``final_answer``.

distilabel always sends its own defaults as well: ``max_tokens`` (``max_new_tokens``, 128
unless set), ``temperature: 1.0``, ``top_p: 1.0``, zero penalties, ``logprobs: false``.
cord-proxy takes ``max_tokens`` as a cap on the answer (the text distilabel keeps), never on
the reasoning, and ``temperature`` as every proposer's: ``--max-new-tokens`` (default 128,
distilabel's own) and ``--temperature`` (default 1.0, distilabel's own) set them.

It runs offline: Hugging Face Hub telemetry and look-ups are off, and tiktoken (which litellm,
installed next to distilabel, imports) reads the encodings litellm ships.
"""

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

from distilabel.models import OpenAILLM  # noqa: E402
from distilabel.pipeline import Pipeline  # noqa: E402
from distilabel.steps import LoadDataFromDicts, StepInput, step  # noqa: E402
from distilabel.steps.tasks import TextGeneration  # noqa: E402


# no `from __future__ import annotations` here: distilabel reads `StepInput` off the signature
@step(inputs=["generation"], outputs=["reasoning", "final_answer"])
def SplitThinking(inputs: StepInput) -> Any:
    """``<think>\\n{trace}\\n</think>\\n\\n{answer}`` into ``reasoning`` and ``final_answer``."""
    for row in inputs:
        content = row.get("generation") or ""
        thinking, closed, answer = content.partition("</think>")
        if not closed:
            thinking, answer = "", content
        row["reasoning"] = thinking.strip().removeprefix("<think>").strip()
        row["final_answer"] = answer.strip()
    yield inputs


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
    parser.add_argument("--max-new-tokens", type=int, default=128, help="the answer's cap")
    parser.add_argument("--temperature", type=float, default=1.0, help="every proposer's")
    parser.add_argument("--batch-size", type=int, default=8, help="rows in flight at once")
    args = parser.parse_args(argv)

    with open(args.input, encoding="utf-8") as file:
        rows = [json.loads(line) for line in file if line.strip()]
    for row in rows:
        row["id"] = str(row["id"])

    cord = {**json.loads(args.cord), "reasoning_format": "inline"}
    with Pipeline(name="cord-proxy-distill") as pipeline:
        load = LoadDataFromDicts(data=rows, batch_size=args.batch_size)
        generate = TextGeneration(
            llm=OpenAILLM(
                model=args.model,
                base_url=args.base_url,
                api_key=args.api_key,
                timeout=3600,  # distilabel's default, 120 s, is short for a decode
                max_retries=3,
                generation_kwargs={
                    "max_new_tokens": args.max_new_tokens,
                    "temperature": args.temperature,
                    "extra_body": {"cord": cord},
                },
            ),
            input_mappings={"instruction": "question"},
            input_batch_size=args.batch_size,
        )
        split = SplitThinking()
        load >> generate >> split

    distiset = pipeline.run(use_cache=False)
    dataset = distiset["default"]["train"]
    dataset.to_json(args.output, lines=True)
    print(f"wrote {len(dataset)} rows to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
