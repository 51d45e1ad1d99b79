"""A circuit breaker per teacher endpoint, shared by every request and every teacher on it.

Closed: calls go through. After `threshold` failures in a row (unreachable, timed out, a
5xx, a malformed answer) it opens: calls fail at once with `CircuitOpenError`, so requests
go on without that teacher instead of waiting out its timeout. After `cooldown_s` one call
is let through (half-open); its success closes the breaker, its failure opens it again.
A 4xx is the request's fault, not the endpoint's: it does not count.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from cord_proxy.errors import (
    CircuitOpenError,
    TeacherError,
    TeacherHTTPError,
)

State = Literal["closed", "open", "half_open"]
R = TypeVar("R")
DEFAULT_THRESHOLD = 5
DEFAULT_COOLDOWN_S = 30.0


def counts_against_endpoint(error: BaseException) -> bool:
    if isinstance(error, TeacherHTTPError):
        return error.http_status >= 500
    return isinstance(error, TeacherError | TimeoutError)


class CircuitBreaker:
    def __init__(
        self,
        threshold: int = DEFAULT_THRESHOLD,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self.probing = False
        self.times_opened = 0

    @property
    def state(self) -> State:
        if self.opened_at is None:
            return "closed"
        if self.probing or self.clock() - self.opened_at >= self.cooldown_s:
            return "half_open"
        return "open"

    async def call(
        self, teacher: str, work: Callable[[], Awaitable[R]], *, auxiliary: bool = False
    ) -> R:
        """Run one call through the breaker.

        An `auxiliary` call (tokenizing, say) is refused while the breaker is open and its
        failure counts, but its success does not close the breaker: an endpoint that
        tokenizes and fails every generation must still open it.
        """
        probe = self._admit_auxiliary(teacher) if auxiliary else self._admit(teacher)
        try:
            result = await work()
        except BaseException as error:
            if probe:
                self.probing = False
            if counts_against_endpoint(error):
                self._failed()
            raise
        if not auxiliary:
            self._succeeded()
        return result

    def _admit(self, teacher: str) -> bool:
        """Whether this call is the half-open probe; raises while the breaker is open."""
        state = self.state
        if state == "closed":
            return False
        if state == "half_open" and not self.probing:
            self.probing = True
            return True
        left = max(0.0, self.cooldown_s - (self.clock() - (self.opened_at or 0.0)))
        raise CircuitOpenError(
            teacher,
            f"circuit open after {self.failures} failures in a row; next try in {left:.0f} s",
        )

    def _admit_auxiliary(self, teacher: str) -> bool:
        """An auxiliary call passes unless the breaker is open; it never is the probe."""
        if self.state == "open":
            self._admit(teacher)
        return False

    def _failed(self) -> None:
        self.failures += 1
        if self.opened_at is not None or self.failures >= self.threshold:
            if self.opened_at is None:
                self.times_opened += 1
            self.opened_at = self.clock()
        self.probing = False

    def _succeeded(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.probing = False


class BreakerRegistry:
    """One breaker per endpoint key, for every teacher client built by one runtime."""

    def __init__(self) -> None:
        self.by_endpoint: dict[str, CircuitBreaker] = {}

    def get(self, endpoint: str, threshold: int, cooldown_s: float) -> CircuitBreaker:
        breaker = self.by_endpoint.get(endpoint)
        if breaker is None:
            breaker = CircuitBreaker(threshold, cooldown_s)
            self.by_endpoint[endpoint] = breaker
        return breaker
