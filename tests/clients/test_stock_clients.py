"""Stock clients work unchanged against the real proxy and the real local teacher (issue 22):
distilabel's `OpenAILLM` in a `TextGeneration` pipeline with its default generation kwargs,
Curator with a pydantic `response_format` (its structured-output probe included), the openai
SDK's `chat.completions.parse`, and litellm's `completion(..., metadata=...)`.

What they send by default (captured from each): distilabel always sends ``max_tokens: 128``,
``temperature: 1.0``, ``top_p: 1.0``, zero penalties, ``logprobs: false``,
``top_logprobs: null`` and ``stop: null``; Curator first posts ``{"model", "messages": []}``
to read ``x-ratelimit-limit-requests``/``-tokens``, then probes with a strict ``json_schema``
(``User{name, age}``) through the SDK's ``parse``; litellm sends ``metadata`` only with
``litellm.enable_preview_features`` on.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel, Field

from tests.clients.conftest import ROOT, rows
from tests.support.proxy_process import ProxyProcess

SLOTS = 48  # [server] max_concurrent_requests: what x-ratelimit-limit-requests says

# Short decodes, and an answer budget a small JSON object fits in (a structured answer cut by
# its budget is no JSON); thinking + answer = 128, distilabel's default max_tokens, so that
# default does not cut the budgets here. Three names for the one local teacher: gemma 270m
# under a JSON schema often runs away (endless digits or whitespace) and every proposer is
# an answer teacher, so a trace gets three tries (each its own seed) at a matching answer.
CONFIG = """
[server]
host = "127.0.0.1"
port = PORT
max_concurrent_requests = SLOTS

[[teachers]]
name = "t1"
base_url = "TEACHER"
model = "gemma3-270m"
temperature = 0.6
timeout = 300

[[teachers]]
name = "t2"
base_url = "TEACHER"
model = "gemma3-270m"
temperature = 0.6
timeout = 300

[[teachers]]
name = "t3"
base_url = "TEACHER"
model = "gemma3-270m"
temperature = 0.6
timeout = 300

[[ensembles]]
name = "cord"
teachers = ["t1", "t2", "t3"]
[ensembles.defaults]
beam_width = 1
proposals_per_teacher = 1
max_steps = 1
max_step_tokens = 16
thinking_budget = 64
answer_budget = 64

[dataset]
path = "DATASET"

[batches]
data_dir = "DATA_DIR"
concurrency = 3
retries = 3
"""

# distilabel's stock path as a user writes it: no subclass, no generation kwargs.
STOCK_DISTILABEL = """
import importlib.util, json, os, sys
from pathlib import Path
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
spec = importlib.util.find_spec("litellm")
for root in spec.submodule_search_locations if spec else []:
    encodings = Path(root) / "litellm_core_utils" / "tokenizers"
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(encodings))
from distilabel.models import OpenAILLM
from distilabel.pipeline import Pipeline
from distilabel.steps import LoadDataFromDicts
from distilabel.steps.tasks import TextGeneration

base_url, inputs, output = sys.argv[1:4]
data = [json.loads(line) for line in open(inputs, encoding="utf-8")]
data = [{"id": row["id"], "instruction": row["question"]} for row in data]
with Pipeline(name="stock-distilabel") as pipeline:
    load = LoadDataFromDicts(data=data)
    generate = TextGeneration(llm=OpenAILLM(model="cord", base_url=base_url, api_key="none"))
    load >> generate
pipeline.run(use_cache=False)["default"]["train"].to_json(output, lines=True)
"""


class Answer(BaseModel):
    answer: str = Field(max_length=16)  # bounded: a small model's string cannot run away


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stock")


@pytest.fixture(scope="module")
def proxy(local_teacher: str, workdir: Path) -> Iterator[ProxyProcess]:
    config = (
        CONFIG.replace("TEACHER", local_teacher)
        .replace("DATASET", str(workdir / "traces.jsonl"))
        .replace("DATA_DIR", str(workdir / "data"))
        .replace("SLOTS", str(SLOTS))
    )
    process = ProxyProcess(config, workdir).start()
    yield process
    process.stop()


def run_tool(python: str, script: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CURATOR_CACHE_DIR": str(tmp / "curator-cache"),
        "DISTILABEL_CACHE_DIR": str(tmp / "distilabel-cache"),
        "CORD_API_KEY": "none",  # the one key variable the README names
        "COLUMNS": "240",  # Rich's tables and logs on one line each
    }
    env.pop("TIKTOKEN_CACHE_DIR", None)
    done = subprocess.run(
        [python, str(script), *args], capture_output=True, text=True, timeout=600, env=env, cwd=tmp
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-5000:])
    return done


def records_with(proxy_dataset: Path, key: str, value: Any, timeout: float = 10.0) -> list[Any]:
    """The dataset records whose ``request`` field `key` is `value` (the sink may lag)."""
    deadline = time.monotonic() + timeout
    while True:
        found = []
        if proxy_dataset.exists():
            for line in proxy_dataset.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                if (record.get("request") or {}).get(key) == value:
                    found.append(record)
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_stock_distilabel_text_generation_with_default_kwargs(
    proxy: ProxyProcess, tools_python: str, problems: Path, tmp_path: Path
) -> None:
    script = tmp_path / "stock_distilabel.py"
    script.write_text(STOCK_DISTILABEL, encoding="utf-8")
    output = tmp_path / "stock.jsonl"
    run_tool(tools_python, script, tmp_path, proxy.base_url, str(problems), str(output))
    written = rows(output)
    assert sorted(r["id"] for r in written) == ["p1", "p2", "p3"]
    # distilabel turns a failed call into a row with no generation: every row has one here
    assert all(r["generation"] for r in written), [r["distilabel_metadata"] for r in written]


def test_stock_curator_structured_example(
    proxy: ProxyProcess, tools_python: str, problems: Path, tmp_path: Path
) -> None:
    output = tmp_path / "structured.jsonl"
    script = ROOT / "clients" / "curator_structured.py"
    args = ("--base-url", proxy.base_url, "--input", str(problems), "--output", str(output))
    done = run_tool(tools_python, script, tmp_path, *args)
    written = rows(output)
    assert sorted(r["id"] for r in written) == ["p1", "p2", "p3"]
    assert all(isinstance(r["answer"], str) for r in written), written
    # Curator sized its request rate from the proxy's x-ratelimit-limit-requests
    rpm = re.search(r"Rate Limit \(RPM\)\s*│\s*(\d+)", done.stdout + done.stderr)
    assert rpm and int(rpm.group(1)) == SLOTS, (done.stdout + done.stderr)[-3000:]


def test_curators_rate_limit_probe_reads_the_admission_limit(proxy: ProxyProcess) -> None:
    """Curator's first request, before any row: an empty conversation, read for its headers
    (``int()`` of each; the status is not looked at)."""
    response = httpx.post(
        f"{proxy.base_url}/chat/completions", json={"model": "cord", "messages": []}, timeout=30
    )
    assert int(response.headers["x-ratelimit-limit-requests"]) == SLOTS
    assert int(response.headers["x-ratelimit-remaining-requests"]) <= SLOTS
    assert response.headers["x-ratelimit-reset-requests"]
    assert response.headers["x-request-id"]


def test_curators_structured_output_probe_passes(proxy: ProxyProcess) -> None:
    """Curator's probe as Curator sends it: ``beta.chat.completions.parse`` of ``User``, on
    the ensemble's defaults; any exception makes Curator refuse the model."""

    class User(BaseModel):
        name: str
        age: int

    client = openai.OpenAI(base_url=proxy.base_url, api_key="none")  # Curator's: 2 retries
    completion = client.chat.completions.parse(
        model="cord",
        messages=[{"role": "user", "content": "Jason is 25 years old."}],
        response_format=User,
    )
    assert isinstance(completion.choices[0].message.parsed, User)


def test_openai_sdk_parse_returns_parsed(proxy: ProxyProcess) -> None:
    client = openai.OpenAI(base_url=proxy.base_url, api_key="none", max_retries=0)
    completion = client.chat.completions.parse(
        model="cord",
        messages=[{"role": "user", "content": "What is 2 + 3?"}],
        response_format=Answer,
        extra_body={"cord": {"reference_answer": "5"}},
    )
    message = completion.choices[0].message
    assert isinstance(message.parsed, Answer), message
    assert completion.choices[0].finish_reason == "stop"
    assert json.loads(message.content or "") == message.parsed.model_dump()
    reasoning = (message.model_extra or {}).get("reasoning_content") or ""
    assert reasoning.startswith("### Step 1."), message


def test_openai_sdk_parse_streams(proxy: ProxyProcess) -> None:
    client = openai.OpenAI(base_url=proxy.base_url, api_key="none", max_retries=0)
    with client.chat.completions.stream(
        model="cord",
        messages=[{"role": "user", "content": "What is 7 + 6?"}],
        response_format=Answer,
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert isinstance(final.choices[0].message.parsed, Answer), final


def test_litellm_completion_with_metadata(proxy: ProxyProcess, workdir: Path) -> None:
    """litellm keeps `metadata` for its own logging: sent to an OpenAI endpoint only with
    ``litellm.enable_preview_features`` (string values, 16 at most). Both ways work, and
    what arrives is in the dataset record."""
    import litellm

    messages = [{"role": "user", "content": "What is 9 + 9?"}]
    common: dict[str, Any] = {"api_base": proxy.base_url, "api_key": "none", "num_retries": 0}
    plain = litellm.completion(
        model="openai/cord", messages=messages, metadata={"run": "plain"}, **common
    )
    assert plain.choices[0].message.content

    tag = uuid.uuid4().hex
    previous = litellm.enable_preview_features
    litellm.enable_preview_features = True
    try:
        sent = litellm.completion(
            model="openai/cord",
            messages=messages,
            metadata={"run": tag, "split": "train"},
            **common,
        )
    finally:
        litellm.enable_preview_features = previous
    message = sent.choices[0].message
    assert message.content and getattr(message, "reasoning_content", None)
    recorded = records_with(workdir / "traces.jsonl", "metadata", {"run": tag, "split": "train"})
    assert len(recorded) == 1, proxy.log()[-3000:]
