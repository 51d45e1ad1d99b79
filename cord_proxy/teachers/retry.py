"""Retries of one teacher call: exponential backoff with full jitter, within a deadline.

A call is made of attempts. An attempt that fails in a way that may pass (HTTP 429, any
5xx, a refused or reset connection) raises `Retryable` around the `TeacherError` to report
if no retry is left; any other error ends the call at once. Between attempts the call
sleeps for the server's ``Retry-After`` when it sent one, else for a random time in
``[0, min(max_delay, base_delay * 2**retry))`` ("full jitter"). Every attempt and every
sleep fit in the teacher's deadline: an attempt is told how much time is left, a sleep
that would end past the deadline is not started, and the last error is raised instead.
A caller may also `give_up` between attempts (the endpoint's circuit breaker has opened):
the last error is then raised at once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from cord_proxy.errors import TeacherError

T = TypeVar("T")

BASE_DELAY_S = 0.5
MAX_DELAY_S = 20.0


class Retryable(Exception):
    """Raised by an attempt whose failure may pass; `error` is reported if no retry is left."""

    def __init__(self, error: TeacherError, retry_after: float | None = None):
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long one teacher call may be tried."""

    max_retries: int
    deadline_s: float
    base_delay_s: float = BASE_DELAY_S
    max_delay_s: float = MAX_DELAY_S

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """The full-jitter wait before retry number `retry` (0 for the first retry)."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2**retry)
        return (rng or _rng).uniform(0.0, ceiling)


_rng = random.Random()


def is_retryable_status(status: int) -> bool:
    """Statuses worth another try: rate limits and server errors."""
    return status == 429 or 500 <= status <= 599


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date.

    Returns None when the header is absent or unreadable; a date in the past gives 0.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


async def call_with_retries(
    attempt: Callable[[float], Awaitable[T]],
    policy: RetryPolicy,
    *,
    on_retry: Callable[[Retryable, float], None] | None = None,
    rng: random.Random | None = None,
    give_up: Callable[[], bool] | None = None,
) -> T:
    """Run `attempt(seconds_left)` until it succeeds, retries run out, the deadline passes or
    `give_up()` says so after a failed attempt.

    Raises the last `Retryable.error` when no retry is left, `TimeoutError` when the
    deadline passes during an attempt, and any other error of an attempt as it is.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + policy.deadline_s
    retry = 0
    while True:
        try:
            async with asyncio.timeout_at(deadline):
                return await attempt(deadline - loop.time())
        except Retryable as failure:
            if retry >= policy.max_retries or (give_up is not None and give_up()):
                raise failure.error from None
            delay = (
                failure.retry_after
                if failure.retry_after is not None
                else policy.backoff(retry, rng)
            )
            if loop.time() + delay >= deadline:
                raise failure.error from None
            if on_retry is not None:
                on_retry(failure, delay)
            await asyncio.sleep(delay)
            retry += 1
