"""A request's extra fields at the real local vLLM teacher (Gemma 3 270M on the CPU, vLLM
0.32): structured answers, answer log-probabilities, sampling fields and a request's chat
template arguments, on the chat route and the completions route (the proxy's template).

Token counts are kept small: the CPU teacher generates about 24 tokens/s.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import jsonschema
import pytest

from cord_proxy.config import GEMMA_TEMPLATE, ChatPrompt, TeacherConfig
from cord_proxy.local import LOCAL_MODEL_NAME
from cord_proxy.teachers.base import CallExtras, Message, Proposal
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher

pytestmark = pytest.mark.integration

QUESTION = [Message(role="user", content="A baker makes 6 trays of 7 cookies. How many cookies?")]
REASONED = "<think>\n6 trays of 7 cookies: 6 x 7 = 42 cookies.\n</think>\n\n"
SCHEMA = {
    "type": "object",
    # bounded: given a free string, a 270M model may write it until its budget runs out
    "properties": {
        "cookies": {"type": "integer", "minimum": 0, "maximum": 1000},
        "unit": {"type": "string", "maxLength": 16},
    },
    "required": ["cookies", "unit"],
    "additionalProperties": False,
}
JSON_SCHEMA = {
    "type": "json_schema",
    "json_schema": {"name": "Count", "schema": SCHEMA, "strict": True},
}
PROMPTS = {"chat": ChatPrompt(), "template": GEMMA_TEMPLATE}

TeacherFactory = Callable[..., OpenAICompatTeacher]


@pytest.fixture
async def make_teacher(local_teacher: str) -> AsyncIterator[TeacherFactory]:
    teachers: list[OpenAICompatTeacher] = []

    def make(**overrides: Any) -> OpenAICompatTeacher:
        settings: dict[str, Any] = {
            "name": "local-gemma",
            "base_url": local_teacher,
            "model": LOCAL_MODEL_NAME,
            "timeout": 120.0,
            "max_retries": 0,
            "temperature": 0.0,
            "seed": 7,
            **overrides,
        }
        teacher = OpenAICompatTeacher(TeacherConfig(**settings))
        teachers.append(teacher)
        return teacher

    yield make
    for teacher in teachers:
        await teacher.aclose()


async def answer(
    teacher: OpenAICompatTeacher, extras: CallExtras | None = None, max_tokens: int = 40
) -> Proposal:
    (proposal,) = await teacher.propose(
        QUESTION, REASONED, n=1, stop=[], max_tokens=max_tokens, extras=extras
    )
    return proposal


# --- response_format: the answer after the reasoning is JSON that matches the schema ---------


@pytest.mark.parametrize("prompt", PROMPTS.values(), ids=PROMPTS.keys())
async def test_a_structured_answer_after_reasoning_matches_the_schema(
    make_teacher: TeacherFactory, prompt: Any
) -> None:
    teacher = make_teacher(prompt=prompt)
    proposal = await answer(teacher, CallExtras(response_format=JSON_SCHEMA))
    assert proposal.finish_reason == "closed", proposal  # the grammar ended it, not the budget
    value = json.loads(proposal.text)
    jsonschema.validate(value, SCHEMA)
    assert value["cookies"] == 42


# --- logprobs: each answer token's value, and its best alternatives ----------------------------


def assert_values(proposal: Proposal, top: int, *, exact: bool) -> None:
    """Every token of the text is there, with finite values and at most (`exact`: exactly)
    `top` alternatives, best first, the greedy choice the best of them."""
    tokens = proposal.logprobs
    assert tokens, proposal
    assert "".join(t.token for t in tokens) == proposal.text
    for token in tokens:
        assert math.isfinite(token.logprob) and token.logprob <= 0.0
        values = [value for _, value in token.top]
        assert len(values) == top if exact else 1 <= len(values) <= top
        assert all(math.isfinite(v) for v in values) and values == sorted(values, reverse=True)
        assert values[0] == pytest.approx(token.logprob, abs=1e-4)  # temperature 0: greedy


async def test_chat_answer_logprobs_with_three_alternatives_each(
    make_teacher: TeacherFactory,
) -> None:
    teacher = make_teacher()
    proposal = await answer(teacher, CallExtras(logprobs=3), max_tokens=12)
    assert_values(proposal, 3, exact=True)
    own = await answer(teacher, CallExtras(logprobs=0), max_tokens=12)
    assert own.text == proposal.text and own.logprobs is not None
    assert [t.top for t in own.logprobs] == [()] * len(own.logprobs)
    assert [t.logprob for t in own.logprobs] == pytest.approx(
        [t.logprob for t in proposal.logprobs or ()], abs=1e-4
    )


async def test_completion_answer_logprobs_with_up_to_three_alternatives(
    make_teacher: TeacherFactory,
) -> None:
    """The completions route lists the alternatives by their text: two tokens that spell the
    same text are one entry, so a token may have fewer than three."""
    teacher = make_teacher(prompt=GEMMA_TEMPLATE)
    proposal = await answer(teacher, CallExtras(logprobs=3), max_tokens=12)
    assert_values(proposal, 3, exact=False)
    assert sum(len(t.top) == 3 for t in proposal.logprobs or ()) > len(proposal.logprobs or ()) // 2


async def test_a_structured_answer_carries_its_logprobs_without_the_end_token(
    make_teacher: TeacherFactory,
) -> None:
    teacher = make_teacher(prompt=GEMMA_TEMPLATE)
    proposal = await answer(teacher, CallExtras(response_format=JSON_SCHEMA, logprobs=1))
    jsonschema.validate(json.loads(proposal.text), SCHEMA)
    assert_values(proposal, 1, exact=True)
    assert proposal.tokens == len(proposal.logprobs or ()) + 1  # <eos> counts, writes nothing


# --- sampling fields: vLLM takes every one of them ---------------------------------------------


async def first_token_id(local_teacher: str, text: str) -> int:
    root = local_teacher.removesuffix("/v1")
    body = {"model": LOCAL_MODEL_NAME, "prompt": text, "add_special_tokens": False}
    async with (
        aiohttp.ClientSession() as session,
        session.post(root + "/tokenize", json=body) as response,
    ):
        response.raise_for_status()
        tokens: list[int] = (await response.json())["tokens"]
    return tokens[0]


@pytest.mark.parametrize("prompt", PROMPTS.values(), ids=PROMPTS.keys())
async def test_sampling_fields_reach_the_proposal(
    make_teacher: TeacherFactory, local_teacher: str, prompt: Any
) -> None:
    teacher = make_teacher(prompt=prompt)
    greedy = await answer(teacher, CallExtras(logprobs=0), max_tokens=4)
    assert greedy.logprobs
    banned = await first_token_id(local_teacher, greedy.logprobs[0].token)
    sampling = {
        "frequency_penalty": 0.1,
        "presence_penalty": 0.1,
        "logit_bias": {str(banned): -100.0},
        "top_k": 5,
        "min_p": 0.05,
        "repetition_penalty": 1.05,
    }
    biased = await answer(teacher, CallExtras(sampling=sampling, logprobs=0), max_tokens=4)
    assert biased.logprobs and biased.logprobs[0].token != greedy.logprobs[0].token


# --- chat_template_kwargs: a view that proposes and scores with them ---------------------------


async def test_a_template_kwargs_view_proposes_and_scores_as_the_teacher(
    make_teacher: TeacherFactory,
) -> None:
    """Gemma's template ignores arguments it does not know: the view reads the same prompt,
    and scores the same, under another score identity."""
    teacher = make_teacher()
    view = teacher.with_prompt_fields({"chat_template_kwargs": {"cord_test_unused": True}})
    assert view.score_identity != teacher.score_identity
    prefix, target = REASONED, "There are 42 cookies."
    plain_score = await teacher.score(QUESTION, prefix, target)
    view_score = await view.score(QUESTION, prefix, target)
    assert view_score.token_ids == plain_score.token_ids
    assert view_score.logprobs == pytest.approx(plain_score.logprobs, abs=1e-2)
    assert (await answer(view, max_tokens=8)).text == (await answer(teacher, max_tokens=8)).text
