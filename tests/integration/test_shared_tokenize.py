"""The prefix of a step's candidates is tokenized once, on the real local teacher.

A counting tap (an aiohttp trace) on the teacher's session counts the ``/tokenize`` and spans
route requests that reach the server. K candidates of one prefix, scored at once, send one
spans request where the server has the route (the local teacher does); on the ``/tokenize``
path (a server without it) they send K + 1 (one for the prefix, one per full prompt) where
unshared calls send 2K, and score the same.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from cord_proxy.config import TeacherConfig
from cord_proxy.local import LOCAL_MODEL_NAME
from cord_proxy.local.vllm_plugin.cord_spans_wire import ROUTE
from cord_proxy.teachers.base import Message, SpanScore
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher

pytestmark = pytest.mark.integration

CONVERSATION = [Message(role="user", content="What is 6 times 7?")]
PREFIX = "<think>\n### Step 1. "
TARGETS = (
    "Six times seven is 42.",
    "We multiply 6 by 7.",
    "Seven sixes make 42.",
    "Five sevens are 35, and one more seven is 42.",
)


class CountingTeacher:
    """A real teacher client whose session counts the ``/tokenize`` and spans requests it
    sends; with `route` off, it takes the ``/tokenize`` path of a server without the route."""

    def __init__(self, base_url: str, *, route: bool = False) -> None:
        self.tokenize_requests = 0
        self.route_requests = 0
        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(self._counted)
        self.session = aiohttp.ClientSession(trace_configs=[trace])
        config = TeacherConfig(
            name="local-gemma",
            base_url=base_url,
            model=LOCAL_MODEL_NAME,
            score_method="cached",
            timeout=300.0,
            max_retries=1,
        )
        self.teacher = OpenAICompatTeacher(config, session=self.session)
        if not route:
            self.teacher._reader.spans.route = False

    async def _counted(self, _session: Any, _context: SimpleNamespace, params: Any) -> None:
        if params.url.path == "/tokenize":
            self.tokenize_requests += 1
        if params.url.path == ROUTE:
            self.route_requests += 1

    async def close(self) -> None:
        await self.teacher.aclose()
        await self.session.close()


async def unshared_scores(base_url: str) -> tuple[list[SpanScore], int]:
    """Each candidate scored by its own fresh client, so that none shares a request."""
    counters = [CountingTeacher(base_url) for _ in TARGETS]
    try:
        scores = await asyncio.gather(
            *(
                c.teacher.score(CONVERSATION, PREFIX, t)
                for c, t in zip(counters, TARGETS, strict=True)
            )
        )
    finally:
        for counter in counters:
            await counter.close()
    return list(scores), sum(c.tokenize_requests for c in counters)


def assert_same_scores(scores: list[SpanScore], unshared: list[SpanScore]) -> None:
    for one, alone in zip(scores, unshared, strict=True):
        assert (one.token_ids, one.tokens, one.context_tokens) == (
            alone.token_ids,
            alone.tokens,
            alone.context_tokens,
        )
        assert one.logprobs == pytest.approx(alone.logprobs, abs=1e-4)  # batching noise


async def test_candidates_of_one_prefix_tokenize_it_once(local_teacher: str) -> None:
    counter = CountingTeacher(local_teacher)
    try:
        shared = await asyncio.gather(
            *(counter.teacher.score(CONVERSATION, PREFIX, t) for t in TARGETS)
        )
    finally:
        await counter.close()
    unshared, unshared_requests = await unshared_scores(local_teacher)
    print(
        f"\n[shared tokenize] {len(TARGETS)} candidates: {counter.tokenize_requests} /tokenize "
        f"requests shared, {unshared_requests} unshared"
    )
    assert counter.tokenize_requests == len(TARGETS) + 1
    assert unshared_requests == 2 * len(TARGETS)
    assert_same_scores(shared, unshared)


async def test_candidates_of_one_prefix_take_one_spans_request(local_teacher: str) -> None:
    by_route = CountingTeacher(local_teacher, route=True)
    try:
        scores = await asyncio.gather(
            *(by_route.teacher.score(CONVERSATION, PREFIX, t) for t in TARGETS)
        )
    finally:
        await by_route.close()
    unshared, _ = await unshared_scores(local_teacher)
    assert (by_route.route_requests, by_route.tokenize_requests) == (1, 0)
    assert_same_scores(scores, unshared)


async def test_the_room_check_of_a_proposal_tokenizes_the_prefix_for_its_scoring(
    local_teacher: str,
) -> None:
    counter = CountingTeacher(local_teacher)
    try:
        # the context is not known yet: the proposal measures its prompt first
        await counter.teacher.propose(CONVERSATION, PREFIX, n=1, stop=[], max_tokens=1)
        assert counter.tokenize_requests == 1
        await asyncio.gather(*(counter.teacher.score(CONVERSATION, PREFIX, t) for t in TARGETS))
    finally:
        await counter.close()
    assert counter.tokenize_requests == 1 + len(TARGETS)  # the prefix's answer was kept
