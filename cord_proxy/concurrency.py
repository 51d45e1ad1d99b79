"""Awaiting several calls as one: all their results, or none of them left running."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)


async def gather_or_cancel(*calls: Awaitable[T]) -> list[T]:
    """The results of `calls`, in order. On the first failure the other calls are cancelled
    and awaited before it is raised: none is left running (and retrying) behind the caller.

    Each call runs in a task of its own (its context variables stay its own). A single call
    is awaited without `asyncio.gather`, which costs a future and its callbacks on a path
    taken once or more per teacher call; it ends as gather would, a caller cancelled while
    it ran included.
    """
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        if len(tasks) == 1:
            return [await _alone(tasks[0])]
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _alone(task: asyncio.Future[T]) -> T:
    """`task`'s result; as `asyncio.gather` does, a caller cancelled while it ran gets a
    `CancelledError` even where the task caught the cancellation and returned."""
    caller = asyncio.current_task()
    asked = caller.cancelling() if caller is not None else 0
    result = await task
    if caller is not None and caller.cancelling() > asked:
        raise asyncio.CancelledError
    return result


async def value_or_error(work: Awaitable[T], kind: type[E]) -> T | E:
    """`work`'s value, or the error of `kind` it raised (anything else is raised)."""
    try:
        return await work
    except kind as error:
        return error
