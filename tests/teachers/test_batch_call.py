"""A teacher's batch of /tokenize POSTs made as one call (cord_proxy/teachers/batch_call.py,
turn_batches.py, http_endpoint.post_json_many), against a FAKE tokenizing server that can
fail a chosen prompt on demand. Both transports: the plain HTTP client and an aiohttp
session passed in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from cord_proxy.config import TeacherConfig
from cord_proxy.errors import TeacherHTTPError, TeacherProtocolError
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher
from cord_proxy.testing import fake_vllm_wire as wire
from cord_proxy.testing.serving import serving_posts


class FakeTokenizer:
    """Tokenizes like vLLM; a prompt in `faults` gets that answer instead, once (`once`) or
    always, and one in `delays` answers after that many seconds (else 0.01). Counts the
    requests in flight at most."""

    def __init__(
        self,
        faults: dict[str, tuple[int, Any]],
        once: bool = True,
        delays: dict[str, float] | None = None,
    ):
        self.faults = faults
        self.once = once
        self.delays = delays or {}
        self.prompts: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        prompt = body["prompt"]
        self.prompts.append(prompt)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delays.get(prompt, 0.01))
            fault = self.faults.pop(prompt, None) if self.once else self.faults.get(prompt)
            if fault is not None:
                status, data = fault
                return web.json_response(data, status=status, headers={"Retry-After": "0"})
            return web.json_response(wire.tokenize(body))
        finally:
            self.in_flight -= 1


@asynccontextmanager
async def teacher_of(
    fake: FakeTokenizer, transport: str, **settings: Any
) -> AsyncIterator[OpenAICompatTeacher]:
    async with serving_posts(fake.handle) as base_url:
        session = aiohttp.ClientSession() if transport == "session" else None
        config = TeacherConfig(
            name="fake-teacher", base_url=base_url, model="m", timeout=5.0, **settings
        )
        teacher = OpenAICompatTeacher(config, session=session)
        try:
            yield teacher
        finally:
            await teacher.aclose()
            if session is not None:
                await session.close()


async def tokenize_all(teacher: OpenAICompatTeacher, prompts: list[str]) -> list[Any]:
    reader = teacher._reader
    return await asyncio.gather(
        *(reader.tokenize({"prompt": p}) for p in prompts), return_exceptions=True
    )


TRANSPORTS = pytest.mark.parametrize("transport", ["plain", "session"])
PROMPTS = [f"prompt {n}" for n in range(6)]


@TRANSPORTS
async def test_a_turn_s_prompts_are_tokenized_in_one_batch_each_answered(transport: str) -> None:
    fake = FakeTokenizer({})
    async with teacher_of(fake, transport) as teacher:
        batches: list[int] = []
        post_many = teacher._endpoint.post_json_many

        async def counted(url: str, bodies: Any, each: Any, slots: asyncio.Semaphore) -> None:
            batches.append(len(bodies))
            await post_many(url, bodies, each, slots)

        teacher._endpoint.post_json_many = counted  # type: ignore[method-assign]
        found = await tokenize_all(teacher, PROMPTS)
    assert batches == [len(PROMPTS)]
    assert [ids for ids, _, _ in found] == [
        tuple(wire.tokenize({"prompt": p})["tokens"]) for p in PROMPTS
    ]
    assert sorted(fake.prompts) == PROMPTS


@TRANSPORTS
async def test_a_retryable_failure_is_retried_alone(transport: str) -> None:
    fake = FakeTokenizer({PROMPTS[2]: (503, {"detail": "busy"})})
    async with teacher_of(fake, transport, max_retries=2) as teacher:
        found = await tokenize_all(teacher, PROMPTS)
        assert teacher.retries == 1
    assert all(isinstance(one, tuple) for one in found)
    assert sorted(fake.prompts) == sorted([*PROMPTS, PROMPTS[2]])  # only the failed one again


@TRANSPORTS
async def test_a_refused_prompt_fails_alone_and_the_endpoint_is_not_blamed(transport: str) -> None:
    fake = FakeTokenizer({PROMPTS[1]: (400, {"detail": "bad prompt"})})
    async with teacher_of(fake, transport, max_retries=2) as teacher:
        found = await tokenize_all(teacher, PROMPTS)
        assert teacher.breaker.failures == 0
    assert isinstance(found[1], TeacherHTTPError) and found[1].http_status == 400
    assert all(isinstance(found[k], tuple) for k in (0, 2, 3, 4, 5))
    assert len(fake.prompts) == len(PROMPTS)


@TRANSPORTS
async def test_a_malformed_answer_fails_the_batch_and_counts_against_the_endpoint(
    transport: str,
) -> None:
    later = dict.fromkeys(PROMPTS[1:], 0.3)  # still out when the malformed answer comes
    fake = FakeTokenizer({PROMPTS[0]: (200, {"tokens": ["not", "ids"]})}, delays=later)
    async with teacher_of(fake, transport) as teacher:
        found = await tokenize_all(teacher, PROMPTS)
        assert teacher.breaker.failures == 1
    assert all(isinstance(one, TeacherProtocolError) for one in found)


@TRANSPORTS
async def test_each_prompt_is_answered_while_a_slower_one_is_still_out(transport: str) -> None:
    fake = FakeTokenizer({}, delays={PROMPTS[0]: 2.0})
    async with teacher_of(fake, transport) as teacher:
        reader = teacher._reader
        asks = [asyncio.ensure_future(reader.tokenize({"prompt": p})) for p in PROMPTS]
        quick = await asyncio.wait_for(asyncio.gather(*asks[1:]), 1.0)
        assert not asks[0].done()
        slow = await asks[0]
    assert [ids for ids, _, _ in [slow, *quick]] == [
        tuple(wire.tokenize({"prompt": p})["tokens"]) for p in PROMPTS
    ]


@TRANSPORTS
async def test_a_batch_keeps_within_the_teacher_s_concurrency(transport: str) -> None:
    fake = FakeTokenizer({})
    async with teacher_of(fake, transport, max_concurrency=2) as teacher:
        found = await tokenize_all(teacher, PROMPTS)
    assert all(isinstance(one, tuple) for one in found)
    assert fake.most_in_flight == 2


@TRANSPORTS
async def test_retries_run_out_and_what_is_left_fails_with_the_last_error(transport: str) -> None:
    fake = FakeTokenizer({PROMPTS[3]: (503, {"detail": "busy"})}, once=False)
    async with teacher_of(fake, transport, max_retries=1) as teacher:
        found = await tokenize_all(teacher, PROMPTS)
    assert isinstance(found[3], TeacherHTTPError) and found[3].http_status == 503
    assert all(isinstance(found[k], tuple) for k in (0, 1, 2, 4, 5))
    assert fake.prompts.count(PROMPTS[3]) == 2
