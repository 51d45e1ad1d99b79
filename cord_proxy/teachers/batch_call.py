"""A batch of POSTs to one route made as one teacher call.

The breaker admits the batch once, the retry policy retries what is left of it (what is
answered stays answered, and what no one waits for any more is dropped), and the teacher's
deadline covers all of it. Each POST is answered as soon as its answer is in, whatever the
others are doing: one slow prompt holds up no other decode's. An answer that cannot be read
fails the rest of the batch inside the breaker, so that a malformed endpoint counts as
failing, as one call's malformed answer does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Generic, TypeVar

from cord_proxy.errors import TeacherError
from cord_proxy.teachers.http_endpoint import EachPosted, Posted
from cord_proxy.teachers.retry import Retryable
from cord_proxy.teachers.turn_batches import Answers

T = TypeVar("T")
PostMany = Callable[[str, Sequence[bytes], EachPosted], Awaitable[None]]


class PostedBatch(Generic[T]):
    """The POSTs of one batch (their bodies JSON, encoded); `attempt` is one try at those not
    answered yet."""

    def __init__(
        self,
        url: str,
        bodies: Sequence[bytes],
        post_many: PostMany,
        read: Callable[[dict[str, Any]], T],
        answers: Answers[T],
    ):
        self.url = url
        self.bodies = bodies
        self.post_many = post_many
        self.read = read
        self.answers = answers
        self.left = list(range(len(bodies)))
        self.retry: Retryable | None = None

    async def attempt(self, _seconds_left: float) -> None:
        """Post what is left and wanted, each answered as it ends; raise the first retryable
        failure, if any, once all have ended."""
        left = [k for k in self.left if self.answers.wanted(k)]
        self.left, self.retry = [], None
        await self.post_many(self.url, [self.bodies[k] for k in left], partial(self._ended, left))
        if self.retry is not None:
            raise self.retry

    def _ended(self, left: list[int], place: int, outcome: Posted) -> None:
        k = left[place]
        if isinstance(outcome, Retryable):
            self.retry = self.retry or outcome
            self.left.append(k)
        elif isinstance(outcome, TeacherError):
            self.answers.give(k, outcome)
        else:
            self.answers.give(k, self.read(outcome))

    def ended(self, _: None) -> None:
        """Nothing is left to read once the batch ends: each answer was given as it came."""
