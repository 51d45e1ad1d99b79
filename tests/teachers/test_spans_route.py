"""Spans by cord-proxy's spans route (``POST /cord/spans``), against a FAKE vLLM that serves it.

The fake is the character-level one of test_span_scoring.py, with the route turned on and,
on demand, broken: what a real server cannot do on demand (a refused pair, a malformed
answer, a route that disappears). The real route, on the local teacher's vLLM, is tested in
tests/integration/test_spans_route_real.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from cord_proxy.errors import TeacherError, TeacherHTTPError, TeacherProtocolError
from cord_proxy.local.vllm_plugin.cord_spans_wire import ROUTE
from cord_proxy.teachers import span_tokens
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher
from cord_proxy.testing import fake_vllm_wire as wire
from cord_proxy.testing.serving import serving_posts
from tests.teachers.test_span_scoring import (
    PAIRS,
    FakeCharVLLM,
    expected_values,
    fake_teacher,
    reader_questions,
    rendered_length,
)


class FakeRouteVLLM(FakeCharVLLM):
    """The FAKE character-level vLLM, serving the spans route; `route` says how it answers:
    an HTTP status for the whole request, a patch of its answer, or None for the real one."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.route: int | dict[str, Any] | None = None

    async def handle(self, request: web.Request) -> web.Response:
        if request.path != ROUTE:
            return await super().handle(request)
        body = await request.json()
        self.requests.append((request.path, body))
        if isinstance(self.route, int):
            return web.json_response({"error": {"message": "refused"}}, status=self.route)
        return web.json_response({**wire.spans(body), **(self.route or {})})

    def running(self) -> AbstractAsyncContextManager[str]:
        return serving_posts(self.handle, spans=True)


@asynccontextmanager
async def route_teacher(fake: FakeRouteVLLM) -> AsyncIterator[OpenAICompatTeacher]:
    async with fake_teacher(fake, score_method="cached") as teacher:
        yield teacher


async def scored_pairs(teacher: OpenAICompatTeacher, pairs: list[tuple[str, str]]) -> list[Any]:
    return await teacher._reader.score_many(reader_questions(teacher, pairs), "cached")


def assert_scored(pairs: list[tuple[str, str]], scored: list[Any]) -> None:
    for (prefix, target), span in zip(pairs, scored, strict=True):
        assert not isinstance(span, TeacherError), span
        assert span.token_ids == tuple(ord(c) for c in target)
        assert span.logprobs == pytest.approx(expected_values(rendered_length(prefix), target))


async def test_spans_scored_together_take_one_route_request_and_no_tokenize() -> None:
    fake = FakeRouteVLLM()
    async with route_teacher(fake) as teacher:
        scored = await scored_pairs(teacher, PAIRS)
    assert_scored(PAIRS, scored)
    assert fake.paths().count(ROUTE) == 1
    assert "/tokenize" not in fake.paths() and "/detokenize" not in fake.paths()
    (body,) = (b for p, b in fake.requests if p == ROUTE)
    assert body["model"] == "fake-model" and len(body["pairs"]) == len(PAIRS)


async def test_the_route_and_tokenize_give_the_same_spans() -> None:
    fake = FakeRouteVLLM()
    async with route_teacher(fake) as teacher:
        questions = reader_questions(teacher, PAIRS)
        by_route = await teacher._reader.spans.find([(q.prefix, q.full) for q in questions])
        teacher._reader.spans.route = False
        by_tokenize = await teacher._reader.spans.find([(q.prefix, q.full) for q in questions])
    assert by_route == by_tokenize
    assert fake.paths().count(ROUTE) == 1 and fake.paths().count("/tokenize") == 5


async def test_a_server_without_the_route_is_asked_once_then_tokenize() -> None:
    fake = FakeRouteVLLM()
    fake.route = 404
    async with route_teacher(fake) as teacher:
        first = await scored_pairs(teacher, PAIRS)
        again = await scored_pairs(teacher, PAIRS[2:])
    assert_scored(PAIRS + PAIRS[2:], first + again)
    assert fake.paths().count(ROUTE) == 1
    assert teacher._reader.spans.route is False


@pytest.mark.parametrize("status", [400, 413])
async def test_a_request_the_route_refuses_whole_is_tokenized_prompt_by_prompt(
    status: int,
) -> None:
    fake = FakeRouteVLLM()
    fake.route = status
    async with route_teacher(fake) as teacher:
        scored = await scored_pairs(teacher, PAIRS)
        fake.route = None
        again = await scored_pairs(teacher, PAIRS[2:])
    assert_scored(PAIRS + PAIRS[2:], scored + again)
    assert fake.paths().count(ROUTE) == 2  # the route is kept for the next round
    assert fake.paths().count("/tokenize") == 5


async def test_a_failing_route_fails_each_pair_and_is_not_tokenized_around() -> None:
    fake = FakeRouteVLLM()
    fake.route = 500
    async with route_teacher(fake) as teacher:
        scored = await scored_pairs(teacher, PAIRS)
    assert all(isinstance(s, TeacherHTTPError) and s.http_status == 500 for s in scored)
    assert "/tokenize" not in fake.paths()


def true_answer(teacher: OpenAICompatTeacher) -> dict[str, Any]:
    """The fake's own answer to the spans of `PAIRS`, to be broken by a test."""
    questions = reader_questions(teacher, PAIRS)
    return wire.spans({"pairs": [{"prefix": q.prefix, "full": q.full} for q in questions]})


async def test_a_pair_the_server_refuses_fails_alone() -> None:
    fake = FakeRouteVLLM()
    async with route_teacher(fake) as teacher:
        fake.route = true_answer(teacher)
        fake.route["spans"][1] = {"error": {"message": "the template refused it", "code": 400}}
        scored = await scored_pairs(teacher, PAIRS)
    assert isinstance(scored[1], TeacherHTTPError) and scored[1].http_status == 400
    assert "the template refused it" in str(scored[1])
    assert scored[1].code == "teacher_refused_request"
    assert_scored([PAIRS[0], PAIRS[2]], [scored[0], scored[2]])


MALFORMED = [
    {"spans": "no list"},
    {"spans": []},
    {"spans": [7, 7, 7]},
    {"spans": [{"tokens": [1, "2"], "start": 1}] * 3},
    {"spans": [{"tokens": [1, 2], "start": 3}] * 3},
    {"spans": [{"tokens": [1, 2], "start": True}] * 3},
    {"spans": [{"error": {"message": "x", "code": 200}}] * 3},
    {"spans": [{"error": "x"}] * 3},
]


@pytest.mark.parametrize("answer", MALFORMED)
async def test_malformed_route_answers_are_protocol_errors(answer: dict[str, Any]) -> None:
    fake = FakeRouteVLLM()
    fake.route = answer
    async with route_teacher(fake) as teacher:
        scored = await scored_pairs(teacher, PAIRS)
    assert all(isinstance(s, TeacherProtocolError) for s in scored)


async def test_a_start_at_either_end_is_a_span_mismatch() -> None:
    fake = FakeRouteVLLM()
    async with route_teacher(fake) as teacher:
        fake.route = true_answer(teacher)
        first, second = fake.route["spans"][:2]
        first["start"], second["start"] = 0, len(second["tokens"])
        scored = await scored_pairs(teacher, PAIRS)
    assert [type(s).__name__ for s in scored[:2]] == ["SpanMismatchError"] * 2
    assert not isinstance(scored[2], TeacherError)


async def test_many_pairs_go_in_requests_of_at_most_the_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(span_tokens, "PAIRS_PER_REQUEST", 2)
    fake = FakeRouteVLLM()
    pairs = [("6 times 7 is", f" {n}") for n in range(5)]
    async with route_teacher(fake) as teacher:
        scored = await scored_pairs(teacher, pairs)
    assert_scored(pairs, scored)
    assert [len(b["pairs"]) for p, b in fake.requests if p == ROUTE] == [2, 2, 1]


async def test_spans_asked_in_one_turn_share_a_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(span_tokens, "PAIRS_PER_REQUEST", 2)
    fake = FakeRouteVLLM()
    pairs = [("6 times 7 is", f" {n}") for n in range(3)]
    async with route_teacher(fake) as teacher:
        scored = await asyncio.gather(*(scored_pairs(teacher, [pair]) for pair in pairs))
    assert_scored(pairs, [span for (span,) in scored])
    assert [len(b["pairs"]) for p, b in fake.requests if p == ROUTE] == [2, 1]
