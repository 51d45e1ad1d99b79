"""Retries of teacher calls (teachers/retry.py), against a FAKE provider over real HTTP.

`FakeProvider` is an aiohttp server in the test process that speaks just enough of the
OpenAI chat API. It answers with a scripted list of statuses, then with success, and counts
every request it receives. Both teacher kinds are tested: ``openai`` (aiohttp, openai_compat.py)
and ``litellm`` (``hosted_vllm/<model>`` with ``api_base`` pointing at the fake).
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from aiohttp import web

from cord_proxy.config import TeacherConfig
from cord_proxy.errors import TeacherHTTPError, TeacherUnreachableError
from cord_proxy.teachers.base import Message, Teacher
from cord_proxy.teachers.factory import build_teacher
from cord_proxy.teachers.hosted import HostedTeacher, stop_litellm_worker
from cord_proxy.teachers.openai_compat import OpenAICompatTeacher
from cord_proxy.teachers.retry import (
    Retryable,
    RetryPolicy,
    call_with_retries,
    is_retryable_status,
    parse_retry_after,
)

QUESTION = [Message(role="user", content="What is 2 + 3?")]
PREFIX = "<think>\n### Step 1."
STOP = ("### Step", "</think>")


class FakeProvider:
    """A FAKE OpenAI-compatible provider: scripted failures first, then a fixed step."""

    def __init__(self, failures: list[tuple[int, dict[str, str]]], *, always: int | None = None):
        self.failures = list(failures)
        self.always = always
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> FakeProvider:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._chat)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        self.paths.append(request.path)
        if self.always is not None:
            return web.json_response({"error": {"message": "down"}}, status=self.always)
        if self.failures:
            status, headers = self.failures.pop(0)
            return web.json_response(
                {"error": {"message": "slow down"}}, status=status, headers=headers
            )
        n = int(body.get("n") or 1)
        return web.json_response(
            {
                "id": "fake",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", "fake"),
                "choices": [
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": " Add 2 and 3.\n"},
                        "logprobs": {"content": [{"token": "x", "logprob": -0.1}] * 4},
                        "finish_reason": "stop",
                        "stop_reason": "### Step",
                    }
                    for i in range(n)
                ],
                "usage": {"prompt_tokens": 12, "completion_tokens": 4 * n, "total_tokens": 12},
            }
        )


def teacher_of(kind: str, base_url: str, **overrides: Any) -> Teacher:
    fields: dict[str, Any] = {
        "name": f"{kind}-teacher",
        "kind": kind,
        "base_url": base_url,
        "model": "hosted_vllm/fake-model" if kind == "litellm" else "fake-model",
        "roles": ["propose"],
        "timeout": 20.0,
    }
    fields.update(overrides)
    return build_teacher(TeacherConfig.model_validate(fields))


@pytest.fixture(autouse=True)
async def _no_litellm_task_left() -> AsyncIterator[None]:
    """litellm logs from a background task; stop it so that no test leaves a task behind."""
    yield
    await stop_litellm_worker()


@pytest.fixture
async def provider_factory() -> AsyncIterator[list[FakeProvider]]:
    started: list[FakeProvider] = []
    yield started
    for provider in started:
        await provider.stop()


async def start(started: list[FakeProvider], provider: FakeProvider) -> FakeProvider:
    started.append(provider)
    return await provider.start()


KINDS = ["litellm", "openai"]


@pytest.mark.parametrize("kind", KINDS)
async def test_two_429s_then_success_is_one_call_with_two_retries(
    kind: str, provider_factory: list[FakeProvider]
) -> None:
    fake = await start(
        provider_factory, FakeProvider([(429, {"Retry-After": "0"}), (429, {"Retry-After": "0"})])
    )
    teacher = teacher_of(kind, fake.base_url, max_retries=2)

    proposals = await teacher.propose(QUESTION, PREFIX, n=1, stop=STOP, max_tokens=16)

    assert len(fake.requests) == 3  # one call: the first try and two retries
    assert [p.text for p in proposals] == [" Add 2 and 3.\n"]
    assert proposals[0].finish_reason == "stop"
    assert proposals[0].stop_string == "### Step"
    assert isinstance(teacher, HostedTeacher | OpenAICompatTeacher)
    assert teacher.retries == 2
    assert teacher.breaker.failures == 0
    await teacher.aclose()


@pytest.mark.parametrize("kind", KINDS)
async def test_always_500_fails_after_max_retries(
    kind: str, provider_factory: list[FakeProvider]
) -> None:
    fake = await start(provider_factory, FakeProvider([], always=500))
    teacher = teacher_of(kind, fake.base_url, max_retries=2)

    started = time.monotonic()
    with pytest.raises(TeacherHTTPError) as raised:
        await teacher.propose(QUESTION, PREFIX, n=1, stop=STOP, max_tokens=16)
    elapsed = time.monotonic() - started

    assert len(fake.requests) == 3  # max_retries + 1
    assert raised.value.http_status == 500
    assert raised.value.teacher == f"{kind}-teacher"
    assert raised.value.status == 502
    assert elapsed < 5.0  # full jitter: at most 0.5 s + 1.0 s of backoff
    assert isinstance(teacher, HostedTeacher | OpenAICompatTeacher)
    assert teacher.breaker.failures == 1  # one failed call, not one per try
    assert teacher.retries == 2
    await teacher.aclose()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_client_error_is_not_retried(
    kind: str, provider_factory: list[FakeProvider]
) -> None:
    fake = await start(provider_factory, FakeProvider([], always=400))
    teacher = teacher_of(kind, fake.base_url, max_retries=3)

    with pytest.raises(TeacherHTTPError) as raised:
        await teacher.propose(QUESTION, PREFIX, n=1, stop=STOP, max_tokens=16)

    assert len(fake.requests) == 1
    assert raised.value.http_status == 400
    await teacher.aclose()


@pytest.mark.parametrize("kind", KINDS)
async def test_retry_after_beyond_the_deadline_gives_up_at_once(
    kind: str, provider_factory: list[FakeProvider]
) -> None:
    fake = await start(provider_factory, FakeProvider([(429, {"Retry-After": "60"})] * 3))
    teacher = teacher_of(kind, fake.base_url, max_retries=2, timeout=3.0)

    started = time.monotonic()
    with pytest.raises(TeacherHTTPError) as raised:
        await teacher.propose(QUESTION, PREFIX, n=1, stop=STOP, max_tokens=16)

    assert time.monotonic() - started < 2.0
    assert len(fake.requests) == 1
    assert raised.value.http_status == 429
    await teacher.aclose()


@pytest.mark.parametrize("kind", KINDS)
async def test_retry_after_as_an_http_date_is_honoured(
    kind: str, provider_factory: list[FakeProvider]
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    fake = await start(provider_factory, FakeProvider([(503, {"Retry-After": when})]))
    teacher = teacher_of(kind, fake.base_url, max_retries=1)

    started = time.monotonic()
    proposals = await teacher.propose(QUESTION, PREFIX, n=1, stop=STOP, max_tokens=16)
    elapsed = time.monotonic() - started

    assert len(fake.requests) == 2
    assert proposals[0].text == " Add 2 and 3.\n"
    assert elapsed >= 0.9  # HTTP dates have whole seconds: 1 to 2 s from now
    await teacher.aclose()


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("kind", KINDS)
async def test_refused_connections_are_retried_then_reported_unreachable(kind: str) -> None:
    teacher = teacher_of(kind, f"http://127.0.0.1:{_closed_port()}/v1", max_retries=1)

    with pytest.raises(TeacherUnreachableError) as raised:
        await teacher.propose(QUESTION, PREFIX, n=1, stop=STOP, max_tokens=16)

    assert raised.value.teacher == f"{kind}-teacher"
    if isinstance(teacher, HostedTeacher):
        assert teacher.retries == 1
    await teacher.aclose()


# --- the retry helper on its own ------------------------------------------------------------


def test_retryable_statuses() -> None:
    assert is_retryable_status(429)
    assert all(is_retryable_status(s) for s in (500, 502, 503, 504))
    assert not any(is_retryable_status(s) for s in (200, 400, 401, 404, 422))


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after(" 7 ") == 7.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("soon") is None


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    policy = RetryPolicy(max_retries=5, deadline_s=60.0, base_delay_s=0.5, max_delay_s=4.0)
    rng = random.Random(7)
    for retry, ceiling in enumerate([0.5, 1.0, 2.0, 4.0, 4.0, 4.0]):
        waits = [policy.backoff(retry, rng) for _ in range(200)]
        assert all(0.0 <= w <= ceiling for w in waits)
        assert max(waits) > 0.8 * ceiling  # spread over the whole range, not fixed


async def test_call_with_retries_counts_attempts_and_uses_retry_after() -> None:
    from cord_proxy.errors import TeacherHTTPError as HTTPError

    attempts: list[float] = []
    delays: list[float] = []

    async def attempt(left: float) -> str:
        attempts.append(left)
        if len(attempts) < 3:
            raise Retryable(HTTPError("t", "HTTP 429", http_status=429), retry_after=0.01)
        return "ok"

    policy = RetryPolicy(max_retries=2, deadline_s=5.0)
    result = await call_with_retries(attempt, policy, on_retry=lambda _f, d: delays.append(d))

    assert result == "ok"
    assert len(attempts) == 3
    assert delays == [0.01, 0.01]
    assert all(0 < left <= 5.0 for left in attempts)
    assert attempts[0] > attempts[-1]  # each attempt is told the time left


async def test_the_deadline_bounds_a_slow_attempt() -> None:
    async def attempt(left: float) -> str:
        await asyncio.sleep(10)
        return "late"

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await call_with_retries(attempt, RetryPolicy(max_retries=3, deadline_s=0.2))
    assert time.monotonic() - started < 1.0
