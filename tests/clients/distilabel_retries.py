"""Run by tests/clients/test_distilabel_retries.py with the data tools' python: distilabel's
stock `OpenAILLM` (no subclass) in a `TextGeneration` pipeline, with `timeout` given and its
default `max_retries`, on the problems of a JSONL file; the rows go to a JSONL file.

Usage: python distilabel_retries.py BASE_URL TIMEOUT_S PROBLEMS OUTPUT
"""

import importlib.util
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
spec = importlib.util.find_spec("litellm")
for root in spec.submodule_search_locations or [] if spec else []:
    encodings = Path(root) / "litellm_core_utils" / "tokenizers"
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(encodings))

from distilabel.models import OpenAILLM  # noqa: E402
from distilabel.pipeline import Pipeline  # noqa: E402
from distilabel.steps import LoadDataFromDicts  # noqa: E402
from distilabel.steps.tasks import TextGeneration  # noqa: E402


def main() -> None:
    base_url, timeout, inputs, output = sys.argv[1:5]
    lines = Path(inputs).read_text(encoding="utf-8").splitlines()
    data = [{"id": p["id"], "instruction": p["question"]} for p in map(json.loads, lines)]
    llm = OpenAILLM(model="cord", base_url=base_url, api_key="none", timeout=int(timeout))
    assert llm.max_retries == 6, llm.max_retries  # distilabel's default, left as it is
    with Pipeline(name="distilabel-retries") as pipeline:
        load = LoadDataFromDicts(data=data)
        generate = TextGeneration(llm=llm)
        load >> generate
    pipeline.run(use_cache=False)["default"]["train"].to_json(output, lines=True)


if __name__ == "__main__":
    main()
