"""Teacher context limits against the REAL local vLLM teacher (max_model_len 2048).

A mixed ensemble (a litellm teacher and a direct one on the same server) configured with
no budgets at all, so the paper's defaults apply (16,384 thinking tokens, 4,096 answer
tokens, 1,024 a step): every call is clamped to the room the context leaves, and the trace
closes when the context is full. And when an answer call still gets a 400 (a configured
context_length the server does not have), the client's error names the teacher and the cause.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.proxy_process import ProxyProcess

NO_BUDGETS = """
[server]
host = "127.0.0.1"
port = PORT

[[teachers]]
name = "hosted"
kind = "litellm"
model = "hosted_vllm/gemma3-270m"
base_url = "TEACHER"
roles = ["propose"]
timeout = 300

[[teachers]]
name = "local"
base_url = "TEACHER"
model = "gemma3-270m"
timeout = 300

[[ensembles]]
name = "mixed"
teachers = ["hosted", "local"]
scorers = ["local"]
"""

WRONG_CONTEXT = """
[server]
host = "127.0.0.1"
port = PORT

[[teachers]]
name = "overconfident"
base_url = "TEACHER"
model = "gemma3-270m"
context_length = 100000
max_retries = 0

[[ensembles]]
name = "wrong"
teachers = ["overconfident"]
[ensembles.defaults]
beam_width = 1
max_steps = 1
max_step_tokens = 8
answer_budget = 5000
"""


# About 1,430 tokens: with the answer's reserve (a quarter of 2,048), about 100 are left for
# the steps, so the trace fills the context in a few steps.
LONG_QUESTION = (
    "Notes on the fruit baskets:\n"
    + "".join(f"Basket {i} holds 3 apples and 2 pears.\n" for i in range(1, 101))
    + "How many apples are there in all?"
)


def start(config: str, teacher: str, tmp_path: Path) -> ProxyProcess:
    return ProxyProcess(config.replace("TEACHER", teacher), tmp_path).start()


@pytest.fixture
def no_budgets(local_teacher: str, tmp_path: Path) -> Iterator[ProxyProcess]:
    proxy = start(NO_BUDGETS, local_teacher, tmp_path)
    yield proxy
    proxy.stop()


def test_a_mixed_ensemble_without_budgets_answers_within_the_context(
    no_budgets: ProxyProcess,
) -> None:
    body = {
        "model": "mixed",
        "messages": [{"role": "user", "content": LONG_QUESTION}],
        "seed": 3,
        "cord": {"beam_width": 1, "reference_answer": "300"},
    }
    answer = httpx.post(f"{no_budgets.base_url}/chat/completions", json=body, timeout=1200)
    assert answer.status_code == 200, answer.text
    cord = answer.json()["cord"]
    assert cord["closed_by"] in ("context", "think")
    assert answer.json()["choices"][0]["message"]["content"] is not None
    if cord["closed_by"] == "context":
        tokens = answer.json()["usage"]["completion_tokens"]
        assert tokens < 2048


def test_an_answer_call_refused_by_the_teacher_names_it_and_the_cause(
    local_teacher: str, tmp_path: Path
) -> None:
    proxy = start(WRONG_CONTEXT, local_teacher, tmp_path)
    try:
        body = {
            "model": "wrong",
            "messages": [{"role": "user", "content": "What is 2 + 2?"}],
            "cord": {"reference_answer": "4"},
            "seed": 1,  # a first step that is not empty (an empty one fails the step instead)
        }
        answer = httpx.post(f"{proxy.base_url}/chat/completions", json=body, timeout=600)
    finally:
        proxy.stop()
    assert answer.status_code == 502, answer.text
    message = answer.json()["error"]["message"]
    assert "final answer" in message
    assert "teacher 'overconfident'" in message
    assert "HTTP 400" in message and "max_tokens" in message  # vLLM says which field
