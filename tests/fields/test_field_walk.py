"""A walk over every classified field, against the real proxy and the real local teacher:
each value the table accepts gets a 200, each refused one a 400 that names it, and the
recorded ones land in the dataset record."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from cord_proxy.request_fields import BY_NAME
from tests.support.proxy_process import ProxyProcess

# Two teachers: a 270M model sometimes runs a free JSON object into its answer budget, and the
# second one is then the next answer teacher, as a response_format mismatch asks.
CONFIG = """
[server]
host = "127.0.0.1"
port = PORT

[[teachers]]
name = "t"
base_url = "TEACHER"
model = "gemma3-270m"
temperature = 0.6
timeout = 300

[[teachers]]
name = "greedy"
base_url = "TEACHER"
model = "gemma3-270m"
temperature = 0.0
timeout = 300

[[ensembles]]
name = "cord"
teachers = ["t", "greedy"]
[ensembles.defaults]
beam_width = 1
proposals_per_teacher = 1
max_steps = 1
max_step_tokens = 16
answer_budget = 48

[dataset]
path = "SINK"
"""
QUESTION = [{"role": "user", "content": "What is 2 + 3?"}]
SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "integer", "minimum": 0, "maximum": 1000}},
    "required": ["answer"],
    "additionalProperties": False,
}
# Every value here is one the table says is accepted: each gets its own request and a 200.
ACCEPTED: dict[str, list[Any]] = {
    "model": ["cord"],
    "messages": [QUESTION],
    "stream": [False, True],
    "stream_options": [{"include_usage": True}],
    "n": [1],
    "temperature": [0.7],
    "top_p": [0.9],
    "seed": [7],
    "stop": [["\n\nQuestion:"]],
    "max_completion_tokens": [64],
    "max_tokens": [128],
    "reasoning_effort": ["minimal", "low", "medium", "high", "xhigh", "max"],
    "response_format": [
        {"type": "text"},
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "sum", "schema": SCHEMA, "strict": True}},
    ],
    "logprobs": [False, True],
    "top_logprobs": [0, 2],
    "frequency_penalty": [0.0, 0.5],
    "presence_penalty": [0.0, -0.5],
    "logit_bias": [{}, {"107": -2}],
    "top_k": [-1, 20],
    "min_p": [0.05],
    "repetition_penalty": [1.1],
    "chat_template_kwargs": [{"enable_thinking": False}],
    "metadata": [{"run": "walk"}],
    "user": ["user-1"],
    "safety_identifier": ["safe-1"],
    "prompt_cache_key": ["cache-1"],
    "prompt_cache_retention": ["24h"],
    "prompt_cache_options": [{"mode": "implicit"}],
    "service_tier": ["auto", "flex"],
    "store": [False, True],
    "verbosity": ["low"],
    "tools": [[]],
    "tool_choice": ["none", "auto"],
    "parallel_tool_calls": [True, False],
    "functions": [[]],
    "function_call": ["none"],
    "audio": [None],
    "modalities": [["text"]],
    "prediction": [None],
    "web_search_options": [None],
    "moderation": [None],
}
REFUSED: dict[str, Any] = {
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    "tool_choice": "required",
    "functions": [{"name": "f", "parameters": {}}],
    "function_call": {"name": "f"},
    "audio": {"voice": "alloy", "format": "wav"},
    "modalities": ["text", "audio"],
    "prediction": {"type": "content", "content": "5"},
    "web_search_options": {"search_context_size": "low"},
    "moderation": {"model": "omni-moderation-latest"},
}
NEEDS = {"top_logprobs": {"logprobs": True}, "stream_options": {"stream": True}}


@pytest.fixture(scope="module")
def proxy(local_teacher: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    workdir = tmp_path_factory.mktemp("walk")
    config = CONFIG.replace("TEACHER", local_teacher).replace("SINK", str(workdir / "sink.jsonl"))
    process = ProxyProcess(config, workdir).start()
    yield process
    process.stop()


def post(proxy: ProxyProcess, body: dict[str, Any]) -> httpx.Response:
    full = {"model": "cord", "messages": QUESTION, **body}
    return httpx.post(f"{proxy.base_url}/chat/completions", json=full, timeout=600)


def walk_cases() -> list[tuple[str, Any]]:
    return [(name, value) for name, values in ACCEPTED.items() for value in values]


def test_the_walk_covers_every_classified_field() -> None:
    assert set(ACCEPTED) == set(BY_NAME)
    refused = {name for name, field in BY_NAME.items() if field.treatment == "refused"}
    assert set(REFUSED) == refused


def test_every_accepted_value_gets_a_200(proxy: ProxyProcess) -> None:
    """Every case is its own request; they run a few at once (the teacher batches them)."""
    with ThreadPoolExecutor(max_workers=6) as pool:
        problems = list(pool.map(lambda case: accepted_problem(proxy, *case), walk_cases()))
    found = [problem for problem in problems if problem is not None]
    assert found == [], found


def accepted_problem(proxy: ProxyProcess, name: str, value: Any) -> str | None:
    """What is wrong with the answer to a request that sets `name` to `value`, if anything."""
    answer = post(proxy, {**NEEDS.get(name, {}), name: value})
    where = f"{name}={value!r}"
    if answer.status_code != 200:
        return f"{where}: {answer.status_code} {answer.text[:500]}"
    if not answer.headers.get("x-request-id"):
        return f"{where}: no x-request-id"
    if "text/event-stream" in answer.headers["content-type"]:
        return None if "data: [DONE]" in answer.text else f"{where}: the stream did not end"
    choice = answer.json()["choices"][0]
    if not choice["message"]["reasoning_content"]:
        return f"{where}: no reasoning"
    structured = name == "response_format" and value["type"] != "text"
    if structured and not isinstance(json.loads(choice["message"]["content"]), dict):
        return f"{where}: the answer is no JSON object"
    if name in ("logprobs", "top_logprobs") and value and choice["logprobs"] is None:
        return f"{where}: no logprobs"
    return None


@pytest.mark.parametrize(("name", "value"), sorted(REFUSED.items()))
def test_a_refused_value_gets_a_400_naming_it(proxy: ProxyProcess, name: str, value: Any) -> None:
    answer = post(proxy, {name: value})
    assert answer.status_code == 400, answer.text[:2000]
    error = answer.json()["error"]
    assert error["param"] == name and name in error["message"]
    assert error["code"] == "unsupported_parameter"


def test_the_rate_limit_headers_come_with_every_answer(proxy: ProxyProcess) -> None:
    answer = post(proxy, {})
    assert answer.status_code == 200
    assert answer.headers["x-ratelimit-limit-requests"] == "256"
    assert 0 <= int(answer.headers["x-ratelimit-remaining-requests"]) <= 256
    assert answer.headers["x-ratelimit-reset-requests"]


def test_recorded_fields_land_in_the_record_and_the_response(proxy: ProxyProcess) -> None:
    recorded = {
        "metadata": {"run": "recorded", "shard": "3"},
        "user": "u-7",
        "safety_identifier": "s-7",
        "prompt_cache_key": "k-7",
        "service_tier": "flex",
    }
    answer = post(proxy, recorded)
    assert answer.status_code == 200, answer.text[:2000]
    body = answer.json()
    assert body["cord"]["request"] == recorded
    sink = Path(str(proxy.config_path)).parent / "sink.jsonl"
    records = [json.loads(line) for line in sink.read_text(encoding="utf-8").splitlines()]
    mine = [r for r in records if r["request_id"] == body["id"]]
    assert len(mine) == 1 and mine[0]["request"] == recorded


def test_reasoning_effort_low_thinks_less_than_high(proxy: ProxyProcess) -> None:
    low = post(proxy, {"reasoning_effort": "low"}).json()["cord"]["budgets"]["thinking"]
    high = post(proxy, {"reasoning_effort": "high"}).json()["cord"]["budgets"]["thinking"]
    assert low < high
