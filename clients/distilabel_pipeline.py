"""Write a reasoning dataset with distilabel, with cord-proxy as the OpenAI endpoint.

    pip install "distilabel[openai]"       # checked with 1.5.3
    cord-proxy up                          # or: cord-proxy serve --config cord.toml
    python clients/distilabel_pipeline.py --base-url http://127.0.0.1:8400/v1 \\
        --input problems.jsonl --output distilabel.jsonl [--cord '{"beam_width": 2}']

Input lines: ``{"id", "question", "answer"}``. distilabel's generation settings are the same
for every row, so `CordOpenAILLM` (a small `OpenAILLM` subclass) carries each row's answer
to the request as ``cord.reference_answer``: the task puts it on the user turn under
``reference_answer`` and the LLM moves it into the ``cord`` object. The request asks for
``reasoning_format: inline``, so the completion's content is
``<think>\\n{trace}\\n</think>\\n\\n{answer}`` (distilabel keeps only the content); the task
splits it into ``reasoning`` and ``final_answer``.

It runs offline: Hugging Face Hub telemetry and look-ups are off, and tiktoken (which litellm,
installed next to distilabel, imports) reads the encodings litellm ships.
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
from distilabel.steps import LoadDataFromDicts  # noqa: E402
from distilabel.steps.tasks import Task  # noqa: E402
from pydantic import Field  # noqa: E402

REFERENCE_KEY = "reference_answer"


class CordOpenAILLM(OpenAILLM):
    """`OpenAILLM` that sends a turn's ``reference_answer`` and `cord` options as ``cord``."""

    cord: dict[str, Any] = Field(default_factory=dict)

    async def agenerate(  # type: ignore[override]
        self,
        input: list[dict[str, Any]],
        num_generations: int = 1,
        temperature: float | None = None,
    ) -> Any:
        messages, reference = [], None
        for turn in input:
            turn = dict(turn)
            reference = turn.pop(REFERENCE_KEY, reference)
            messages.append(turn)
        cord = {**self.cord, "reasoning_format": "inline"}
        if reference is not None:
            cord[REFERENCE_KEY] = str(reference)
        extra = {"temperature": temperature} if temperature is not None else {}
        completion = await self._aclient.chat.completions.create(  # type: ignore[attr-defined]
            model=self.model,
            messages=messages,
            n=num_generations,
            extra_body={"cord": cord},
            **extra,
        )
        return self._generations_from_openai_completion(completion)


class CordGeneration(Task):
    """A question (and its reference answer) in; the trace and the final answer out."""

    @property
    def inputs(self) -> list[str]:
        return ["question", "answer"]

    @property
    def outputs(self) -> list[str]:
        return ["reasoning", "final_answer", "model_name"]

    def format_input(self, input: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"role": "user", "content": input["question"], REFERENCE_KEY: input["answer"]}]

    def format_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        thinking, _, answer = (output or "").partition("</think>")
        return {
            "reasoning": thinking.removeprefix("<think>").strip(),
            "final_answer": answer.strip(),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8400/v1")
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "not-needed"))
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--model", default="cord", help="the ensemble")
    parser.add_argument("--cord", default="{}", help="cord options for every row (JSON)")
    parser.add_argument("--batch-size", type=int, default=8, help="rows in flight at once")
    args = parser.parse_args(argv)

    with open(args.input, encoding="utf-8") as file:
        rows = [json.loads(line) for line in file if line.strip()]
    for row in rows:
        row["id"], row["answer"] = str(row["id"]), str(row["answer"])

    with Pipeline(name="cord-proxy-distill") as pipeline:
        load = LoadDataFromDicts(data=rows, batch_size=args.batch_size)
        generate = CordGeneration(
            llm=CordOpenAILLM(
                model=args.model,
                base_url=args.base_url,
                api_key=args.api_key,
                timeout=3600,
                max_retries=3,
                cord=json.loads(args.cord),
            ),
            input_batch_size=args.batch_size,
        )
        load >> generate

    distiset = pipeline.run(use_cache=False)
    dataset = distiset["default"]["train"]
    dataset.to_json(args.output, lines=True)
    print(f"wrote {len(dataset)} rows to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
