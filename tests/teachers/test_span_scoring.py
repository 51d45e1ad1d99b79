"""Scoring on token ids, against a FAKE vLLM with a character-level tokenizer.

The fake answers vLLM 0.32's ``/tokenize``, ``/detokenize`` and token-id ``/v1/completions``
(``prompt_logprobs``, ``echo``, forced one-token completions) with scripted
log-probabilities: the value of token ``t`` at position ``p`` is ``-(t % 7 + p % 3 + 1) / 10``.
It can break on purpose (a forced token read as 0.0, as ``processed_logprobs`` does; a
detokenizer that drops a character). The real server is exercised in
tests/integration/test_teacher_client.py and tests/integration/test_exact_spans.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from cord_proxy.config import GEMMA_TEMPLATE, TeacherConfig
from cord_proxy.errors import (
    CircuitOpenError,
    ScoredPromptTooLongError,
    SpanMismatchError,
    TeacherCapabilityError,
    TeacherError,
    TeacherProtocolError,
)
from cord_proxy.local.vllm_plugin.cord_spans_wire import common_prefix_length
from cord_proxy.teachers import read_plan
from cord_proxy.teachers.base import Message
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher
from cord_proxy.teachers.piece_text import spells_target
from cord_proxy.teachers.prompting import render_template
from cord_proxy.teachers.span_scoring import SpanQuestion
from cord_proxy.teachers.span_tokens import server_root
from cord_proxy.testing import fake_vllm_wire as wire
from cord_proxy.testing.serving import serving_posts

CONVERSATION = [Message(role="user", content="What is 6 times 7?")]


def scripted_logprob(token: int, position: int) -> float:
    return -((token % 7) + (position % 3) + 1) / 10


class FakeCharVLLM:
    """A FAKE vLLM whose tokenizer maps each character to its code point (cord_proxy.testing)."""

    def __init__(
        self,
        forced_reads_zero: bool = False,
        detokenize_drops: int = 0,
        pieces: Literal["exact", "none", "wrong"] = "exact",
        most_prompts: int | None = None,
        forces: bool = True,
    ) -> None:
        self.forced_reads_zero = forced_reads_zero
        self.forces = forces  # writes the tokens a forced read names (cord-proxy's processor)
        self.detokenize_drops = detokenize_drops
        self.pieces = pieces  # the token strings /tokenize returns: none, all "?", or numbers
        self.most_prompts = most_prompts  # a request with more prompts is refused (400)
        self.requests: list[tuple[str, dict[str, Any]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((request.path, body))
        if request.path == "/tokenize":
            answer = wire.tokenize(body)
            if self.pieces != "exact":
                wrong = [7] if self.pieces == "numbers" else ["?"]  # "numbers": not strings
                answer["token_strs"] = None if self.pieces == "none" else wrong * answer["count"]
            return web.json_response(answer)
        prompts = body.get("prompt")
        if (
            self.most_prompts is not None
            and isinstance(prompts, list)
            and isinstance(prompts[0], list)
        ) and len(prompts) > self.most_prompts:
            return web.json_response({"error": {"message": "too many prompts"}}, status=400)
        if request.path == "/detokenize":
            text = wire.detokenize(body)["prompt"]
            return web.json_response({"prompt": text[self.detokenize_drops :]})
        return web.json_response(self.complete(body))

    def complete(self, body: dict[str, Any]) -> Any:
        return wire.score_completion(body, scripted_logprob, self.forced_reads_zero, self.forces)

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    def asked(self) -> list[dict[str, Any]]:
        """The one-token reads."""
        return [b for p, b in self.requests if p == "/v1/completions" and "logprob_token_ids" in b]

    def forced(self) -> list[dict[str, Any]]:
        """The forced reads."""
        return [b for p, b in self.requests if p == "/v1/completions" and "vllm_xargs" in b]

    def running(self) -> AbstractAsyncContextManager[str]:
        return serving_posts(self.handle)


@asynccontextmanager
async def fake_teacher(fake: FakeCharVLLM, **overrides: Any) -> AsyncIterator[OpenAICompatTeacher]:
    async with fake.running() as base_url:
        settings: dict[str, Any] = {
            "name": "fake-scorer",
            "base_url": base_url,
            "model": "fake-model",
            "max_retries": 0,
            "timeout": 5.0,
            "prompt": GEMMA_TEMPLATE,
            **overrides,
        }
        teacher = OpenAICompatTeacher(TeacherConfig(**settings))
        try:
            yield teacher
        finally:
            await teacher.aclose()


def expected_values(prefix_ids: int, target: str) -> list[float]:
    return [scripted_logprob(ord(c), prefix_ids + i) for i, c in enumerate(target)]


def rendered_length(prefix: str) -> int:
    return 1 + len(render_template(GEMMA_TEMPLATE, CONVERSATION, prefix))


@pytest.mark.parametrize("method", ["cached", "prompt_logprobs", "echo"])
async def test_each_method_reads_exactly_the_target_tokens(method: str) -> None:
    prefix, target = "6 times 7 is", " 42 ½ 🙂"
    async with fake_teacher(FakeCharVLLM(), score_method=method) as teacher:
        span = await teacher.score(CONVERSATION, prefix, target)
    assert span.token_ids == tuple(ord(c) for c in target)
    assert span.logprobs == pytest.approx(expected_values(rendered_length(prefix), target))
    assert span.context_tokens == rendered_length(prefix)
    assert span.method == method


async def test_cached_reads_the_first_position_alone_then_the_rest_together() -> None:
    fake = FakeCharVLLM(forces=False)
    prefix, target = "6 times 7 is", " 42 and 6"
    async with fake_teacher(fake, score_method="cached") as teacher:
        await teacher.score(CONVERSATION, prefix, target)
    first, rest = fake.asked()
    context = rendered_length(prefix)
    assert [len(p) for p in first["prompt"]] == [context]
    assert first["logprob_token_ids"] == [ord(" ")]
    assert [len(p) for p in rest["prompt"]] == list(range(context + 1, context + len(target)))
    assert rest["logprob_token_ids"] == sorted({ord(c) for c in target[1:]})
    assert all(b["max_tokens"] == 1 and b["return_tokens_as_token_ids"] for b in (first, rest))


async def test_a_long_target_is_read_in_chunks_of_prompts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read_plan, "MAX_PROMPTS_PER_READ", 64)
    fake = FakeCharVLLM(forces=False)
    target = " " + "abcdefghij" * 14  # 141 tokens: 1 + 64 + 64 + 12
    async with fake_teacher(fake, score_method="cached") as teacher:
        span = await teacher.score(CONVERSATION, "x", target)
    assert [len(b["prompt"]) for b in fake.asked()] == [1, 64, 64, 12]
    assert span.logprobs == pytest.approx(expected_values(rendered_length("x"), target))


def reader_questions(
    teacher: OpenAICompatTeacher, pairs: list[tuple[str, str]]
) -> list[SpanQuestion]:
    prompt = teacher._tokenize_prompt
    return [
        SpanQuestion(prompt(CONVERSATION, prefix), prompt(CONVERSATION, prefix + target), target)
        for prefix, target in pairs
    ]


PAIRS = [("6 times 7 is", " 42 cows"), ("6 times 7 is", " 41"), ("6 times 7 makes", " 42.")]


async def test_spans_scored_together_take_one_forced_read_per_distinct_prompts() -> None:
    fake = FakeCharVLLM()
    async with fake_teacher(fake, score_method="cached") as teacher:
        scored = await teacher._reader.score_many(reader_questions(teacher, PAIRS), "cached")
        again = await teacher._reader.score_many(reader_questions(teacher, PAIRS[2:]), "cached")
    first, sibling, alone = fake.forced()  # PAIRS[0] and PAIRS[1] share their prefix
    assert [len(p) for p in first["prompt"]] == [rendered_length(PAIRS[k][0]) for k in (0, 2)]
    assert [len(p) for p in sibling["prompt"]] == [rendered_length(PAIRS[1][0])]
    assert first["max_tokens"] == max(len(PAIRS[k][1]) for k in (0, 2))
    assert all(b["temperature"] == 0.0 and b["ignore_eos"] for b in (first, sibling, alone))
    assert fake.asked() == []
    for (prefix, target), span in zip(PAIRS + PAIRS[2:], scored + again, strict=True):
        assert not isinstance(span, TeacherError)
        assert span.logprobs == pytest.approx(expected_values(rendered_length(prefix), target))
    assert "/detokenize" not in fake.paths()


async def test_a_server_that_writes_its_own_tokens_gets_one_token_reads_from_then_on() -> None:
    fake = FakeCharVLLM(forces=False)
    async with fake_teacher(fake, score_method="cached") as teacher:
        for pairs in (PAIRS[:1], PAIRS[2:]):
            (span,) = await teacher._reader.score_many(reader_questions(teacher, pairs), "cached")
            prefix, target = pairs[0]
            assert not isinstance(span, TeacherError)
            assert span.logprobs == pytest.approx(expected_values(rendered_length(prefix), target))
    assert len(fake.forced()) == 1  # tried once, not again
    assert len(fake.asked()) == 4


async def test_spans_scored_together_take_two_reads_and_no_detokenize() -> None:
    fake = FakeCharVLLM(forces=False)
    async with fake_teacher(fake, score_method="cached") as teacher:
        scored = await teacher._reader.score_many(reader_questions(teacher, PAIRS), "cached")
    first, rest = fake.asked()
    assert [len(p) for p in first["prompt"]] == [rendered_length(p) for p, _ in PAIRS]
    assert len(rest["prompt"]) == sum(len(t) - 1 for _, t in PAIRS)
    assert rest["logprob_token_ids"] == sorted({ord(c) for _, t in PAIRS for c in t[1:]})
    for (prefix, target), span in zip(PAIRS, scored, strict=True):
        assert not isinstance(span, TeacherError)
        assert span.logprobs == pytest.approx(expected_values(rendered_length(prefix), target))
    assert "/detokenize" not in fake.paths()  # the pieces spell each target
    assert fake.paths().count("/tokenize") == 5  # the shared prefix once


async def test_one_failing_span_leaves_the_others_scored() -> None:
    fake = FakeCharVLLM()
    pairs = [*PAIRS, ("a", "b" * 3000)]
    async with fake_teacher(fake, score_method="cached") as teacher:
        scored = await teacher._reader.score_many(reader_questions(teacher, pairs), "cached")
    assert isinstance(scored[-1], ScoredPromptTooLongError)
    assert all(not isinstance(span, TeacherError) for span in scored[:-1])
    assert len(fake.forced()) == 2  # PAIRS[0] and PAIRS[1] share their prefix


async def test_a_server_that_refuses_a_batch_has_each_span_read_alone() -> None:
    fake = FakeCharVLLM(most_prompts=1)
    pairs = [("6 times 7 is", " 4"), ("6 times 7 is", " 5"), ("6 times 8 is", " 4")]
    async with fake_teacher(fake, score_method="cached") as teacher:
        scored = await teacher._reader.score_many(reader_questions(teacher, pairs), "cached")
    for (prefix, target), span in zip(pairs, scored, strict=True):
        assert not isinstance(span, TeacherError)
        assert span.logprobs == pytest.approx(expected_values(rendered_length(prefix), target))
    sizes = [len(b["prompt"]) for b in fake.asked()]
    assert sizes[0] == 3 and sorted(sizes[1:]) == [1] * 6  # refused, then one span at a time


@pytest.mark.parametrize("pieces", ["wrong", "numbers"])
async def test_pieces_that_do_not_spell_the_target_leave_the_check_to_the_server(
    pieces: str,
) -> None:
    fake = FakeCharVLLM(pieces=pieces)
    async with fake_teacher(fake, score_method="cached") as teacher:
        span = await teacher.score(CONVERSATION, "6 times 7 is", " 42")
    assert span.token_ids == (ord(" "), ord("4"), ord("2"))
    assert fake.paths().count("/detokenize") == 1


async def test_chat_prompts_are_tokenized_as_continued_messages() -> None:
    fake = FakeCharVLLM()
    async with fake_teacher(fake, prompt={"kind": "chat"}, score_method="echo") as teacher:
        span = await teacher.score(CONVERSATION, "6 times 7 is", " 42")
    tokenize = [b for p, b in fake.requests if p == "/tokenize"]
    assert all(b["continue_final_message"] and not b["add_generation_prompt"] for b in tokenize)
    assert {b["messages"][-1]["content"] for b in tokenize} == {"6 times 7 is", "6 times 7 is 42"}
    assert span.token_ids == (ord(" "), ord("4"), ord("2"))


async def test_a_span_that_does_not_spell_the_target_is_a_typed_error() -> None:
    fake = FakeCharVLLM(detokenize_drops=2, pieces="none")
    async with fake_teacher(fake, score_method="prompt_logprobs") as teacher:
        with pytest.raises(SpanMismatchError) as caught:
            await teacher.score(CONVERSATION, "6 times 7 is", " 42 cows")
    assert caught.value.teacher == "fake-scorer"
    assert "/detokenize" in fake.paths()  # checked beside the read; the values are dropped


async def test_probe_chooses_cached_when_both_methods_agree() -> None:
    fake = FakeCharVLLM()
    async with fake_teacher(fake) as teacher:
        spans = await asyncio.gather(
            *(teacher.score(CONVERSATION, "6 times 7 is", t) for t in (" 42", " 41"))
        )
        probe = await teacher.probe_scoring()
    assert {s.method for s in spans} == {"cached"}
    assert probe.method == "cached" and probe.mean_abs_diff == 0.0
    assert probe.reason.endswith("; forced reads")
    probe_calls = [b for p, b in fake.requests if p == "/v1/completions" and "prompt_logprobs" in b]
    assert len(probe_calls) == 2  # one by the first score (probed once), one asked directly


async def test_probe_falls_back_when_forced_tokens_read_zero() -> None:
    fake = FakeCharVLLM(forced_reads_zero=True)
    async with fake_teacher(fake) as teacher:
        span = await teacher.score(CONVERSATION, "6 times 7 is", " 42")
        probe = await teacher.probe_scoring()
    assert span.method == "prompt_logprobs"
    assert probe.method == "prompt_logprobs"
    assert probe.mean_abs_diff is not None and probe.mean_abs_diff > 0.25
    assert "processed_logprobs" in probe.reason


async def test_a_missing_asked_value_is_a_protocol_error() -> None:
    fake = FakeCharVLLM()

    def nothing_asked(body: dict[str, Any]) -> dict[str, Any]:
        logprobs = {"tokens": ["token_id:1"], "top_logprobs": [{"token_id:1": -0.5}]}
        return {"choices": [{"index": 0, "text": "?", "logprobs": logprobs}]}

    fake.complete = nothing_asked  # type: ignore[method-assign]
    async with fake_teacher(fake, score_method="cached") as teacher:
        with pytest.raises(TeacherProtocolError, match="no log-probability came back"):
            await teacher.score(CONVERSATION, "a", "b")


async def test_a_scored_prompt_over_the_context_is_refused_before_reading() -> None:
    fake = FakeCharVLLM()
    async with fake_teacher(fake, score_method="cached") as teacher:
        with pytest.raises(ScoredPromptTooLongError, match="over the teacher's context"):
            await teacher.score(CONVERSATION, "a", "b" * 3000)
    assert fake.asked() == []


@pytest.mark.parametrize(
    "answer",
    [
        {"choices": []},
        {"choices": [{"index": 0, "prompt_logprobs": "junk"}]},
        {"choices": [{"index": 0, "prompt_logprobs": [None, {"98": {"logprob": "NaN"}}]}]},
    ],
    ids=["no-choices", "not-a-list", "not-a-number"],
)
async def test_malformed_score_answers_are_protocol_errors(answer: dict[str, Any]) -> None:
    fake = FakeCharVLLM()
    fake.complete = lambda body: answer  # type: ignore[method-assign]
    async with fake_teacher(fake, score_method="prompt_logprobs") as teacher:
        with pytest.raises(TeacherProtocolError) as caught:
            await teacher.score(CONVERSATION, "a", "b")
    assert caught.value.teacher == "fake-scorer"


@pytest.mark.parametrize("forces", [True, False], ids=["forced", "one-token"])
async def test_a_nan_log_probability_is_refused(forces: bool) -> None:
    fake = FakeCharVLLM(forces=forces)

    def nan_value(body: dict[str, Any]) -> dict[str, Any]:
        if "vllm_xargs" in body:
            answer: dict[str, Any] = wire.score_completion(body, scripted_logprob, forces=forces)
            answer["choices"][0]["logprobs"]["token_logprobs"][0] = float("nan")
            return answer
        (token,) = body["logprob_token_ids"]
        top = [{f"token_id:{token}": float("nan")}]
        return {"choices": [{"index": 0, "logprobs": {"top_logprobs": top}}]}

    fake.complete = nan_value  # type: ignore[method-assign]
    async with fake_teacher(fake, score_method="cached") as teacher:
        with pytest.raises(TeacherError, match="log-probability"):
            await teacher.score(CONVERSATION, "a", "b")


async def test_concurrent_scores_each_read_their_own_span() -> None:
    targets = (".", " Paris.", "is Paris.")
    async with fake_teacher(FakeCharVLLM(), score_method="echo") as teacher:
        spans = await asyncio.gather(*(teacher.score(CONVERSATION, "x", t) for t in targets))
    assert [len(s.token_ids) for s in spans] == [1, 7, 9]


async def test_empty_target_needs_no_call() -> None:
    fake = FakeCharVLLM()
    async with fake_teacher(fake) as teacher:
        span = await teacher.score(CONVERSATION, "abc", "")
    assert span.tokens == () and fake.requests == []


async def test_score_without_the_score_role_is_a_capability_error() -> None:
    fake = FakeCharVLLM()
    async with fake_teacher(fake, roles=["propose"]) as teacher:
        with pytest.raises(TeacherCapabilityError):
            await teacher.score(CONVERSATION, "a", "b")
    assert fake.requests == []


def test_span_helpers() -> None:
    assert server_root("http://h:8000/v1/") == "http://h:8000"
    assert server_root("http://h:8000") == "http://h:8000"
    assert common_prefix_length([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix_length([1, 2], [1, 2, 3]) == 2
    assert spells_target(" 42", " 42") and spells_target("x 42", " 42")
    assert spells_target("42", " 42")  # a SentencePiece decoder's stripped word-start space
    assert not spells_target("2", " 42") and not spells_target("42", "  42")
    assert not spells_target(None, " 42")  # pieces that could not be read here


def _shared_items(first: list[int], second: list[int]) -> int:
    count = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        count += 1
    return count


@given(
    st.lists(st.integers(0, 2), max_size=300),
    st.integers(0, 300),
    st.lists(st.integers(0, 2), max_size=200),
)
def test_common_prefix_length_is_the_count_of_equal_leading_items(
    first: list[int], kept: int, tail: list[int]
) -> None:
    second = first[:kept] + tail  # often long runs in common, as a prefix and its continuation
    expected = _shared_items(first, second)
    assert common_prefix_length(first, second) == expected
    assert common_prefix_length(tuple(second), first) == expected


def test_score_identity_covers_everything_that_changes_the_prompt() -> None:
    def identity(**overrides: Any) -> str:
        config = {"name": "t", "base_url": "http://h/v1", "model": "m", **overrides}
        return OpenAICompatTeacher(TeacherConfig(**config)).score_identity

    assert identity() == identity(name="other", temperature=0.1)
    assert identity() != identity(system_prompt="Think step by step.")
    assert identity() != identity(prompt=GEMMA_TEMPLATE)
    assert identity() != identity(model="m2")
    assert identity() != identity(base_url="http://h2/v1")


async def test_malformed_scoring_answers_open_the_breaker() -> None:
    fake = FakeCharVLLM()
    fake.complete = lambda body: {"choices": "junk"}  # type: ignore[method-assign]
    settings = {"score_method": "prompt_logprobs", "breaker_threshold": 2, "breaker_cooldown": 60}
    async with fake_teacher(fake, **settings) as teacher:
        for _ in range(2):
            with pytest.raises(TeacherProtocolError):
                await teacher.score(CONVERSATION, "a", "b")
        assert "/detokenize" not in fake.paths()  # the pieces spell the target
        calls = len(fake.requests)
        with pytest.raises(CircuitOpenError):
            await teacher.score(CONVERSATION, "a", "b")
    assert len(fake.requests) == calls  # refused without the network
