"""Awaiting several calls as one: all their results, or none of them left running."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def gather_or_cancel(*calls: Awaitable[T]) -> list[T]:
    """The results of `calls`, in order. On the first failure the other calls are cancelled
    and awaited before it is raised: none is left running (and retrying) behind the caller."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
