"""Asks of one event-loop turn made as one batch (cord_proxy/teachers/turn_batches.py)."""

from __future__ import annotations

import asyncio

import pytest

from cord_proxy.teachers.turn_batches import Answers, TurnBatches


class Maker:
    """Records each batch; answers an item by doubling it once `release` is set, failing
    the items that are negative, and answering the first one before the others."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.ended = 0
        self.cancelled = 0

    async def make(self, items: list[int], answers: Answers[int]) -> None:
        self.batches.append(items)
        try:
            answers.give(0, items[0] * 2)
            await self.release.wait()
            for place, item in enumerate(items[1:], start=1):
                answers.give(place, ValueError(item) if item < 0 else item * 2)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.ended += 1


async def test_the_asks_of_one_turn_go_out_as_one_batch_and_later_ones_as_another() -> None:
    maker = Maker()
    batches = TurnBatches(maker.make)
    first = [batches.ask(n) for n in (1, 2, 3)]
    await asyncio.sleep(0)
    later = batches.ask(4)
    maker.release.set()
    assert await asyncio.gather(*first, later) == [2, 4, 6, 8]
    assert maker.batches == [[1, 2, 3], [4]]


async def test_each_ask_is_answered_as_its_answer_comes_and_a_failure_is_its_own() -> None:
    maker = Maker()
    batches = TurnBatches(maker.make)
    first, bad, good = (batches.ask(n) for n in (5, -1, 7))
    assert await first == 10  # before the rest of the batch is released
    assert not bad.done() and not good.done()
    maker.release.set()
    with pytest.raises(ValueError):
        await bad
    assert await good == 14


async def test_a_batch_that_fails_fails_every_ask_it_has_not_answered() -> None:
    async def failing(items: list[int], answers: Answers[int]) -> None:
        answers.give(0, 1)
        raise OSError("down")

    batches: TurnBatches[int, int] = TurnBatches(failing)
    answered, failed = batches.ask(0), batches.ask(1)
    assert await answered == 1
    with pytest.raises(OSError, match="down"):
        await failed


async def test_a_batch_that_leaves_an_ask_unanswered_fails_it_rather_than_hang() -> None:
    async def forgetful(items: list[int], answers: Answers[int]) -> None:
        answers.give(0, 1)

    batches: TurnBatches[int, int] = TurnBatches(forgetful)
    answered, forgotten = batches.ask(0), batches.ask(1)
    assert await answered == 1
    with pytest.raises(RuntimeError, match="without answering"):
        await forgotten


async def test_a_batch_whose_asks_are_all_cancelled_is_cancelled() -> None:
    maker = Maker()
    batches = TurnBatches(maker.make)
    asks = [batches.ask(n) for n in (1, 2, 3)]
    assert await asks[0] == 2
    asks[1].cancel()
    await asyncio.sleep(0.01)
    assert maker.cancelled == 0  # one ask still waits
    asks[2].cancel()
    for _ in range(100):
        if batches.running == 0:
            break
        await asyncio.sleep(0.01)
    assert (maker.cancelled, batches.running) == (1, 0)


async def test_asks_cancelled_before_their_batch_starts_make_no_batch() -> None:
    maker = Maker()
    batches = TurnBatches(maker.make)
    for ask in [batches.ask(n) for n in (1, 2)]:
        ask.cancel()
    await asyncio.sleep(0.01)
    assert maker.batches == [] and batches.running == 0


async def test_cancelling_the_batch_cancels_the_asks_it_had_not_answered() -> None:
    maker = Maker()
    batches = TurnBatches(maker.make)
    first, second = batches.ask(1), batches.ask(2)
    assert await first == 2
    for task in asyncio.all_tasks():
        if task is not asyncio.current_task():
            task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
