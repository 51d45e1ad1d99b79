"""What both teacher clients share: roles, the request's sampling settings, and every call
through the endpoint's circuit breaker, the retry policy and the concurrency slots."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from cord_proxy.config import TeacherConfig
from cord_proxy.errors import TeacherTimeoutError
from cord_proxy.teachers.base import CallExtras, Message, Proposal
from cord_proxy.teachers.breaker import CircuitBreaker
from cord_proxy.teachers.retry import Retryable, RetryPolicy, call_with_retries

R = TypeVar("R")
T = TypeVar("T")


@dataclass(frozen=True)
class StepCall:
    """One ``propose`` call: `seed` falls back to the teacher's own, `temperature` and
    `top_p` are the request's overrides (None: the teacher's own)."""

    n: int
    stop: tuple[str, ...]
    max_tokens: int
    seed: int | None
    temperature: float | None
    top_p: float | None
    reserve: int
    extras: CallExtras = field(default_factory=CallExtras)

    def overrides(self) -> dict[str, float]:
        """The request's sampling settings that override the teacher's own."""
        values = {"temperature": self.temperature, "top_p": self.top_p}
        return {key: value for key, value in values.items() if value is not None}


class TeacherClient(ABC):
    """The part of a teacher client that does not depend on its transport."""

    def __init__(self, config: TeacherConfig, breaker: CircuitBreaker | None = None):
        self.config = config
        self.breaker = breaker or CircuitBreaker(config.breaker_threshold, config.breaker_cooldown)
        self.breaker.adopt_first_cooldown(config.breaker_first_cooldown)
        self.retries = 0
        self._slots = asyncio.Semaphore(config.max_concurrency)
        self._policy = RetryPolicy(max_retries=config.max_retries, deadline_s=config.timeout)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def can_propose(self) -> bool:
        return "propose" in self.config.roles

    @property
    def can_score(self) -> bool:
        return "score" in self.config.roles

    @property
    @abstractmethod
    def gives_logprobs(self) -> bool:
        """Whether its proposals can carry their tokens' log-probabilities
        (`CallExtras.logprobs`). It is not part of the `Teacher` protocol, which fakes
        implement too: ask ``getattr(teacher, "gives_logprobs", False)``."""

    async def propose(
        self,
        conversation: Sequence[Message],
        prefix: str,
        *,
        n: int,
        stop: Sequence[str],
        max_tokens: int,
        seed: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        reserve: int = 0,
        extras: CallExtras | None = None,
    ) -> list[Proposal]:
        """The continuations of `prefix`; `reserve` tokens of the context are kept free for
        what follows the step (the answer and its scoring) where the client knows the context."""
        call = StepCall(
            n=n,
            stop=tuple(stop),
            max_tokens=max_tokens,
            seed=seed if seed is not None else self.config.seed,
            temperature=temperature,
            top_p=top_p,
            reserve=reserve,
            extras=extras or CallExtras(),
        )
        return await self._propose(conversation, prefix, call)

    @abstractmethod
    async def _propose(
        self, conversation: Sequence[Message], prefix: str, call: StepCall
    ) -> list[Proposal]: ...

    async def _call(
        self,
        attempt: Callable[[float], Awaitable[R]],
        read: Callable[[R], T],
        *,
        auxiliary: bool = False,
    ) -> T:
        """One call through the breaker: `attempt(seconds_left)` retried by the policy, its
        answer read by `read`; past the teacher's timeout, a `TeacherTimeoutError`.

        `read` runs inside the breaker, so that a malformed answer counts against the
        endpoint as a failure rather than as a success. An ordinary call stops retrying once
        the breaker opens (the endpoint is known to be down) and fails with its last error; a
        call let through an open breaker (a trial or a probe) retries as usual.
        """
        try:
            return await self.breaker.call(
                self.name, self._work, attempt, read, auxiliary=auxiliary
            )
        except TimeoutError:
            timeout = self.config.timeout
            raise TeacherTimeoutError(self.name, f"no answer within {timeout:g} s") from None

    async def _work(self, attempt: Callable[[float], Awaitable[R]], read: Callable[[R], T]) -> T:
        """`_call`'s work inside the breaker (a method, not a closure made per call)."""
        give_up = None if self.breaker.is_open else self._breaker_opened
        answer = await call_with_retries(
            attempt, self._policy, on_retry=self._on_retry, give_up=give_up
        )
        return read(answer)

    def _breaker_opened(self) -> bool:
        return self.breaker.is_open

    def _on_retry(self, failure: Retryable, delay: float) -> None:
        self.retries += 1
