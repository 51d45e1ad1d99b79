"""Forced reads on the real local teacher, which loads cord-proxy's logits processor.

A round's spans are read in one forced request: the written tokens are the targets, and
each value agrees with the same span read by one-token prompts (bf16 noise: a decode step
against a prefill). The processor leaves a request that names no tokens alone, and the
server refuses a malformed field with a 400 and keeps serving.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from cord_proxy.config import GEMMA_TEMPLATE, TeacherConfig
from cord_proxy.local import LOCAL_MODEL_NAME
from cord_proxy.local.vllm_plugin.cord_forced_key import FORCED_TOKENS
from cord_proxy.teachers.base import Message
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher
from cord_proxy.teachers.span_scoring import SpanQuestion, SpanReader

pytestmark = pytest.mark.integration

MAX_TOKEN_GAP = 0.2  # nats between a forced value and a one-token read of the same token
CONVERSATION = [Message(role="user", content="A farmer has 6 pens of 7 cows. How many cows?")]
TRACE = "<think>\n### Step 1. Each pen holds 7 cows, and there are 6 pens.\n\n### Step 2. "
PAIRS = [
    (TRACE + "Six sevens are 42.</think> The final answer is ", "42 cows in total."),
    (TRACE + "We add 7 six times.</think> The final answer is ", "42 cows in total."),
    (TRACE, "Six times seven is 42, so there are 42 cows."),  # siblings: one prefix,
    (TRACE, "We multiply: 6 x 7 = 42 cows."),  # two targets, two requests
]


@pytest.fixture
async def teacher(local_teacher: str) -> AsyncIterator[OpenAICompatTeacher]:
    config = TeacherConfig(
        name="local-forced",
        base_url=local_teacher,
        model=LOCAL_MODEL_NAME,
        prompt=GEMMA_TEMPLATE,
        score_method="cached",
        timeout=300.0,
        max_retries=0,
    )
    made = OpenAICompatTeacher(config)
    yield made
    await made.aclose()


def counting(reader: SpanReader) -> Counter[str]:
    counts: Counter[str] = Counter()
    post = reader._post

    async def counted(url: str, body: dict[str, Any], read: Callable[[Any], Any]) -> Any:
        kind = "forced" if "vllm_xargs" in body else url.rsplit("/", 1)[-1]
        counts[kind] += 1
        return await post(url, body, read)

    reader._post = counted
    return counts


def questions(teacher: OpenAICompatTeacher) -> list[SpanQuestion]:
    prompt = teacher._tokenize_prompt
    return [
        SpanQuestion(prompt(CONVERSATION, prefix), prompt(CONVERSATION, prefix + target), target)
        for prefix, target in PAIRS
    ]


async def test_a_round_is_read_forced_and_agrees_with_one_token_reads(
    teacher: OpenAICompatTeacher,
) -> None:
    reader = teacher._reader
    counts = counting(reader)
    forced = await reader.score_many(questions(teacher), "cached")
    assert counts["forced"] == 2  # the siblings share a prompt: one in each request
    assert counts["completions"] == 0
    reader._forces = False  # the same spans by one-token reads
    counts.clear()
    one_token = await reader.score_many(questions(teacher), "cached")
    assert counts["forced"] == 0 and counts["completions"] == 2
    gaps = []
    for by_force, by_token in zip(forced, one_token, strict=True):
        assert not isinstance(by_force, Exception) and not isinstance(by_token, Exception)
        assert by_force.token_ids == by_token.token_ids
        assert by_force.context_tokens == by_token.context_tokens
        gaps += [abs(a - b) for a, b in zip(by_force.logprobs, by_token.logprobs, strict=True)]
    print(f"\n[forced reads] largest gap to one-token reads: {max(gaps):.4f} nats")
    assert max(gaps) < MAX_TOKEN_GAP


async def test_requests_without_forced_tokens_are_left_alone(local_teacher: str) -> None:
    body = {"model": LOCAL_MODEL_NAME, "prompt": "6 times 7 is", "max_tokens": 4}
    async with httpx.AsyncClient(timeout=120.0) as client:
        plain = await client.post(f"{local_teacher}/completions", json={**body, "seed": 1})
        other = {FORCED_TOKENS: '{"00000000": [17]}'}  # names no prompt of this request
        named = await client.post(
            f"{local_teacher}/completions", json={**body, "seed": 1, "vllm_xargs": other}
        )
    assert plain.status_code == named.status_code == 200
    assert plain.json()["choices"][0]["text"] == named.json()["choices"][0]["text"]


@pytest.mark.parametrize("field", ["not json", '{"ab": "x"}', '{"ab": []}', "[1, 2]"])
async def test_a_malformed_field_is_a_400_and_the_server_keeps_serving(
    local_teacher: str, field: str
) -> None:
    body = {"model": LOCAL_MODEL_NAME, "prompt": "6 times 7 is", "max_tokens": 2}
    async with httpx.AsyncClient(timeout=120.0) as client:
        refused = await client.post(
            f"{local_teacher}/completions", json={**body, "vllm_xargs": {FORCED_TOKENS: field}}
        )
        after = await client.post(f"{local_teacher}/completions", json=body)
    assert refused.status_code == 400, refused.text
    assert FORCED_TOKENS in refused.text
    assert after.status_code == 200
