"""Spans on a byte-level BPE tokenizer (DeepSeek's), behind a FAKE vLLM server.

No byte-level BPE model runs here, so tests/support/fake_vllm_bpe.py serves DeepSeek's real
tokenizer with scripted log-probabilities: what is checked is which tokens the client
scores and that it reads each one's value, not a model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from cord_proxy import errors
from cord_proxy.config import ChatPrompt, TeacherConfig, TemplatePrompt
from cord_proxy.errors import TeacherError
from cord_proxy.teachers.base import Message
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher
from cord_proxy.teachers.prompting import render_template
from tests.support.fake_vllm_bpe import (
    ASSISTANT,
    BOS,
    EOS,
    MODEL,
    USER,
    FakeVllmBpe,
    render_chat,
    scripted_logprob,
)

DEEPSEEK_TEMPLATE = TemplatePrompt(
    system=BOS + "{content}",
    user=USER + "{content}",
    assistant=ASSISTANT + "{content}" + EOS,
    assistant_open=ASSISTANT,
)
CONVERSATION = [Message(role="user", content="How many elements has the field F_7?")]
PREFIX = "<think>\nA prime field has p elements.\n</think>\n\nThe final answer is "
TARGET = "𝔽₇ has 7 elements"
METHODS = ("cached", "prompt_logprobs", "echo")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeVllmBpe]:
    server = FakeVllmBpe()
    server.start_in_thread()
    yield server
    server.stop_thread()


@pytest.fixture
async def make_teacher(fake: FakeVllmBpe) -> AsyncIterator[Any]:
    fake.fault = None
    fake.requests.clear()
    teachers: list[OpenAICompatTeacher] = []

    def make(method: str, prompt: Any = DEEPSEEK_TEMPLATE) -> OpenAICompatTeacher:
        config = TeacherConfig(
            name="deepseek-fake",
            base_url=fake.base_url,
            model=MODEL,
            prompt=prompt,
            score_method=method,
            max_retries=0,
            timeout=30.0,
        )
        teacher = OpenAICompatTeacher(config)
        teachers.append(teacher)
        return teacher

    yield make
    fake.fault = None
    for teacher in teachers:
        await teacher.aclose()


def expected_span(fake: FakeVllmBpe, rendered_prefix: str, rendered_full: str, bos: bool) -> Any:
    """The target's ids by the tokenizer itself, their positions and scripted values."""
    before = fake.model.encode(rendered_prefix, bos)
    full = fake.model.encode(rendered_full, bos)
    common = 0
    while common < min(len(before), len(full)) and before[common] == full[common]:
        common += 1
    ids = full[common:]
    values = [scripted_logprob(common + i, t) for i, t in enumerate(ids)]
    return common, ids, values


def template_expectation(fake: FakeVllmBpe, prefix: str, target: str) -> Any:
    return expected_span(
        fake,
        render_template(DEEPSEEK_TEMPLATE, CONVERSATION, prefix),
        render_template(DEEPSEEK_TEMPLATE, CONVERSATION, prefix + target),
        bos=True,
    )


def test_the_reference_fuses_with_the_trailing_space(fake: FakeVllmBpe) -> None:
    """The case itself: the target's first character shares a token with the prefix's space."""
    _, ids, _ = template_expectation(fake, PREFIX, TARGET)
    assert len(ids) == 9
    decoded = fake.model.decode(ids)
    assert decoded == " " + TARGET  # the prefix's space rides in the first target token


@pytest.mark.parametrize("method", METHODS)
async def test_all_of_the_targets_tokens_are_scored(
    fake: FakeVllmBpe, make_teacher: Any, method: str
) -> None:
    teacher = make_teacher(method)
    span = await teacher.score(CONVERSATION, PREFIX, TARGET)
    context, ids, values = template_expectation(fake, PREFIX, TARGET)
    assert len(span.logprobs) == len(ids) == 9
    assert list(span.token_ids) == ids
    assert span.logprobs == pytest.approx(values, abs=1e-9)
    assert span.mean_logprob == pytest.approx(sum(values) / len(values), abs=1e-9)
    assert span.context_tokens == context
    assert len(span.tokens) == len(ids)
    assert span.method == method


def cached_reads(fake: FakeVllmBpe) -> list[tuple[list[int], list[int]]]:
    """Per cached request, in order: its prompts' lengths and the token ids it asks for."""
    reads = []
    for body in fake.calls("/v1/completions"):
        asked = body.get("logprob_token_ids") or body.get("allowed_token_ids")
        if not asked:
            continue
        assert body["max_tokens"] == 1
        assert body["return_tokens_as_token_ids"] is True
        prompts = body["prompt"] if isinstance(body["prompt"][0], list) else [body["prompt"]]
        assert all(isinstance(t, int) for prompt in prompts for t in prompt)
        reads.append(([len(prompt) for prompt in prompts], [int(t) for t in asked]))
    return reads


async def test_cached_reads_the_first_position_then_the_rest(
    fake: FakeVllmBpe, make_teacher: Any
) -> None:
    span = await make_teacher("cached").score(CONVERSATION, PREFIX, TARGET)
    context, ids, _ = template_expectation(fake, PREFIX, TARGET)
    reads = cached_reads(fake)
    assert reads[0] == ([context], [ids[0]])  # alone, before the rest
    lengths = sorted(n for prompt_lengths, _ in reads for n in prompt_lengths)
    assert lengths == [context + i for i in range(len(ids))]  # each position read once
    for prompt_lengths, asked in reads:
        assert {ids[n - context] for n in prompt_lengths} <= set(asked)
    assert not any(b.get("prompt_logprobs") is not None for b in fake.calls("/v1/completions"))
    assert list(span.token_ids) == ids


async def test_auto_picks_cached_where_the_probe_passes(make_teacher: Any) -> None:
    teacher = make_teacher("auto")
    probe = await teacher.probe_scoring()
    assert probe.method == "cached"
    assert probe.mean_abs_diff == pytest.approx(0.0, abs=1e-6)
    span = await teacher.score(CONVERSATION, PREFIX, TARGET)
    assert span.method == "cached"
    assert len(span.token_ids) == 9


@pytest.mark.parametrize("method", ["cached", "prompt_logprobs"])
async def test_chat_prompt_spans_come_from_the_servers_template(
    fake: FakeVllmBpe, make_teacher: Any, method: str
) -> None:
    span = await make_teacher(method, prompt=ChatPrompt()).score(CONVERSATION, PREFIX, TARGET)
    messages = [{"role": "user", "content": CONVERSATION[0].content}]

    def chat(prefix: str) -> str:
        assistant = {"role": "assistant", "content": prefix}
        return render_chat([*messages, assistant], continue_final=True, add_generation=False)

    context, ids, values = expected_span(fake, chat(PREFIX), chat(PREFIX + TARGET), bos=False)
    assert list(span.token_ids) == ids
    assert len(ids) == 9
    assert span.logprobs == pytest.approx(values, abs=1e-9)
    assert span.context_tokens == context


@pytest.mark.parametrize("fault", ["tokenize_drops_last_token", "detokenize_drops_last_char"])
@pytest.mark.parametrize("method", ["cached", "prompt_logprobs"])
async def test_a_span_that_fails_the_decode_check_is_a_typed_error(
    fake: FakeVllmBpe, make_teacher: Any, fault: str, method: str
) -> None:
    teacher = make_teacher(method)
    fake.fault = fault
    with pytest.raises(errors.SpanMismatchError) as caught:
        await teacher.score(CONVERSATION, PREFIX, TARGET)
    assert isinstance(caught.value, TeacherError)
    assert caught.value.teacher == "deepseek-fake"
    assert "deepseek-fake" in str(caught.value)
