"""Calls asked in one turn of the event loop, made together as one batch.

A round's scoring asks a teacher to tokenize every candidate's prompts at once; each ask is
a future here (no task of its own), and the asks of one turn go out as one batch: one pass
through the teacher's breaker, retry policy and deadline for all of them
(teachers/batch_call.py). Each ask is answered as soon as its own answer is in, and a batch
none of whose asks is still wanted is cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741 - an item asked
V = TypeVar("V")


class Answers(Generic[V]):
    """The asks of one batch, by place: `give` answers one, `wanted` says whether anyone
    still waits for it."""

    def __init__(self, futures: list[asyncio.Future[V]]) -> None:
        self.futures = futures

    def wanted(self, place: int) -> bool:
        return not self.futures[place].done()

    def give(self, place: int, outcome: V | BaseException) -> None:
        future = self.futures[place]
        if future.done():
            return
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    def fail_rest(self, error: BaseException) -> None:
        for place in range(len(self.futures)):
            self.give(place, error)


MakeBatch = Callable[[list[I], Answers[V]], Awaitable[None]]


class TurnBatches(Generic[I, V]):
    """Asks gathered by turn; `make` answers a batch's items (`Answers.give`), and raises
    only when the rest of the batch failed."""

    def __init__(self, make: MakeBatch[I, V]) -> None:
        self._make = make
        self._asked: list[tuple[I, asyncio.Future[V]]] = []
        self._running: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> int:
        return len(self._running)

    def ask(self, item: I) -> asyncio.Future[V]:
        """`item`'s answer to come, made with the other items asked in this turn."""
        loop = asyncio.get_running_loop()
        if not self._asked:  # the batch's task first runs in the next turn, with every ask
            task = loop.create_task(self._batch())
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        future: asyncio.Future[V] = loop.create_future()
        self._asked.append((item, future))
        return future

    async def _batch(self) -> None:
        asked, self._asked = self._asked, []
        answers = Answers([future for _, future in asked])
        if all(future.done() for future in answers.futures):
            return
        task = asyncio.current_task()
        assert task is not None
        for future in answers.futures:
            future.add_done_callback(partial(_cancel_if_unwanted, task, answers))
        try:
            await self._make([item for item, _ in asked], answers)
        except Exception as error:
            answers.fail_rest(error)
        except BaseException:  # cancelled, or the process ends: no ask is left waiting
            for future in answers.futures:
                future.cancel()
            raise
        answers.fail_rest(RuntimeError("a batch ended without answering every ask"))


def _cancel_if_unwanted(
    task: asyncio.Task[None], answers: Answers[V], ended: asyncio.Future[V]
) -> None:
    """Cancel the batch once none of its asks is waiting and one of them was cancelled."""
    if ended.cancelled() and all(future.done() for future in answers.futures):
        task.cancel()
