"""The circuit breaker: alone with a fake clock, and in a teacher client against a FAKE server."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from bench.faultteacher import FakeSpec, build_app
from cord_proxy.config import TeacherConfig
from cord_proxy.errors import (
    CircuitOpenError,
    TeacherHTTPError,
    TeacherProtocolError,
    TeacherUnreachableError,
)
from cord_proxy.teachers.breaker import BreakerRegistry, CircuitBreaker
from cord_proxy.teachers.factory import build_teacher
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher
from tests.fake_teacher_http import CountingFakeTeacher

QUESTION: list[Any] = []


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def fail() -> None:
    raise TeacherUnreachableError("t", "connection refused")


async def succeed() -> str:
    return "ok"


async def test_opens_after_the_threshold_probes_after_the_cooldown_and_closes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=3, cooldown_s=10.0, clock=clock)
    for _ in range(3):
        with pytest.raises(TeacherUnreachableError):
            await breaker.call("t", fail)
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError, match="circuit open"):
        await breaker.call("t", succeed)
    clock.now += 10.0
    assert breaker.state == "half_open"
    with pytest.raises(TeacherUnreachableError):
        await breaker.call("t", fail)  # the probe fails: open again
    assert breaker.state == "open"
    clock.now += 10.0
    assert await breaker.call("t", succeed) == "ok"
    assert breaker.state == "closed" and breaker.failures == 0
    assert breaker.times_opened == 1


async def test_client_errors_and_interleaved_successes_do_not_open_it() -> None:
    breaker = CircuitBreaker(threshold=2, cooldown_s=10.0)

    async def bad_request() -> None:
        raise TeacherHTTPError("t", "HTTP 400", http_status=400)

    for _ in range(5):
        with pytest.raises(TeacherHTTPError):
            await breaker.call("t", bad_request)
        with pytest.raises(TeacherUnreachableError):
            await breaker.call("t", fail)
        await breaker.call("t", succeed)
    assert breaker.state == "closed"


def test_teachers_on_one_endpoint_share_a_breaker() -> None:
    registry = BreakerRegistry()
    configs = [
        TeacherConfig(name=n, base_url="http://127.0.0.1:9/v1", model="m") for n in ("a", "b")
    ]
    other = TeacherConfig(name="c", base_url="http://127.0.0.1:10/v1", model="m")
    a, b, c = (build_teacher(t, registry) for t in (*configs, other))
    assert isinstance(a, OpenAICompatTeacher) and isinstance(b, OpenAICompatTeacher)
    assert isinstance(c, OpenAICompatTeacher)
    assert a.breaker is b.breaker and a.breaker is not c.breaker


async def test_an_open_breaker_fails_calls_at_once_without_the_network() -> None:
    fake = CountingFakeTeacher()
    base_url = fake.start_in_thread()
    config = TeacherConfig(
        name="broken-teacher",
        base_url=base_url,
        model="broken",
        max_retries=0,
        breaker_threshold=2,
        breaker_cooldown=60.0,
    )
    teacher = OpenAICompatTeacher(config)
    try:
        for _ in range(2):
            with pytest.raises(TeacherHTTPError):
                await teacher.propose(QUESTION, "x", n=1, stop=[], max_tokens=4)
        started = time.perf_counter()
        with pytest.raises(CircuitOpenError) as caught:
            await teacher.propose(QUESTION, "x", n=1, stop=[], max_tokens=4)
        assert time.perf_counter() - started < 0.05
        assert caught.value.teacher == "broken-teacher"
        assert teacher.breaker.state == "open"
    finally:
        await teacher.aclose()
        fake.stop_thread()


async def test_malformed_answers_open_the_breaker() -> None:
    """A 200 of the wrong shape is a failure of the endpoint, not a success (bench/faults.py)."""
    server = TestServer(build_app(FakeSpec(propose_s=0.0, tokenize_s=0.0)), host="127.0.0.1")
    await server.start_server()
    config = TeacherConfig(
        name="malformed-teacher",
        base_url=str(server.make_url("/v1")),
        model="malformed",
        max_retries=0,
        breaker_threshold=2,
        breaker_cooldown=60.0,
    )
    teacher = OpenAICompatTeacher(config)
    try:
        assert len(await teacher.propose(QUESTION, "x", n=1, stop=[], max_tokens=4)) == 1
        await teacher._client().post(
            str(server.make_url("/fake/fault")), json={"fault": "malformed"}
        )
        for _ in range(2):
            with pytest.raises(TeacherProtocolError):
                await teacher.propose(QUESTION, "x", n=1, stop=[], max_tokens=4)
        assert teacher.breaker.state == "open"
        with pytest.raises(CircuitOpenError):
            await teacher.propose(QUESTION, "x", n=1, stop=[], max_tokens=4)
    finally:
        await teacher.aclose()
        await server.close()
