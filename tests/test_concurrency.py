"""gather_or_cancel: every result in order, or the first failure with no call left running."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from cord_proxy.concurrency import gather_or_cancel


async def _after(seconds: float, value: int) -> int:
    await asyncio.sleep(seconds)
    return value


async def _fail_after(seconds: float) -> int:
    await asyncio.sleep(seconds)
    raise ValueError("failed")


async def test_results_come_in_the_order_of_the_calls() -> None:
    assert await gather_or_cancel(_after(0.02, 1), _after(0.0, 2), _after(0.01, 3)) == [1, 2, 3]


async def test_the_first_failure_is_raised_after_the_others_are_cancelled() -> None:
    slow = asyncio.ensure_future(_after(10.0, 1))
    with pytest.raises(ValueError, match="failed"):
        await gather_or_cancel(slow, _fail_after(0.01))
    assert slow.cancelled()


async def test_cancelling_the_caller_cancels_every_call() -> None:
    calls = [asyncio.ensure_future(_after(10.0, i)) for i in range(3)]
    caller = asyncio.ensure_future(gather_or_cancel(*calls))
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert all(call.cancelled() for call in calls)


async def test_a_single_call_gives_its_result_or_raises_its_error() -> None:
    assert await gather_or_cancel(_after(0.0, 7)) == [7]
    with pytest.raises(ValueError, match="failed"):
        await gather_or_cancel(_fail_after(0.0))


async def test_a_single_call_runs_in_a_task_of_its_own() -> None:
    """Its context variables (a beam's routing key, say) do not reach the caller."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="caller's")

    async def sets() -> str:
        var.set("the call's")
        return var.get()

    assert await gather_or_cancel(sets()) == ["the call's"]
    assert var.get() == "caller's"


async def test_cancelling_the_caller_cancels_a_single_call() -> None:
    call = asyncio.ensure_future(_after(10.0, 1))
    caller = asyncio.ensure_future(gather_or_cancel(call))
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert call.cancelled()


async def test_a_cancelled_caller_gets_no_result_from_a_call_that_caught_the_cancel() -> None:
    """As with asyncio.gather: the caller was cancelled, so it is, whatever the call did."""
    started = asyncio.Event()

    async def stubborn() -> int:
        started.set()
        try:
            await asyncio.sleep(10.0)
        except asyncio.CancelledError:
            return 1
        return 2

    caller = asyncio.ensure_future(gather_or_cancel(stubborn()))
    await started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
