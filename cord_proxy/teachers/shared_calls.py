"""Identical calls made once: the callers of one key share one call and its answer.

Callers that ask while the call runs wait for it; a success is also kept for later callers,
the most recent first, within a budget of weight (a tokenized prompt weighs its tokens).
A caller that is cancelled (a round's deadline, a dropped client) leaves the call running
for the others; when the last caller is gone, the call is cancelled. A failure reaches
every caller of that call and is not kept: the next caller makes the call again.
`aclose` cancels what still runs and waits until it has ended: an owner whose calls live as
long as a round, say, leaves none behind.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson

V = TypeVar("V")


def request_key(url: str, body: dict[str, Any]) -> bytes:
    """A short key of a JSON request: the same for the same URL and body, whatever the order
    of the body's fields."""
    encoded = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(url.encode() + b"\0" + encoded, digest_size=16).digest()


@dataclass(eq=False)
class _Call(Generic[V]):
    task: asyncio.Future[V]
    waiters: int = 0


class SharedCalls(Generic[V]):
    """One call per key at a time, its answer shared by its callers and kept a while."""

    def __init__(self, budget: int, weigh: Callable[[V], int]) -> None:
        self._budget = budget
        self._weigh = weigh
        self._running: dict[Hashable, _Call[V]] = {}
        self._kept: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._weight = 0
        self._abandoned: set[asyncio.Future[V]] = set()  # cancelled, and maybe not ended yet
        self.made = 0  # calls started, rather than served by another's

    async def call(self, key: Hashable, make: Callable[[], Awaitable[V]]) -> V:
        """The answer of `make()` for `key`: a kept one, the running call's, or a new call's."""
        kept = self._kept.get(key)
        if kept is not None:
            self._kept.move_to_end(key)
            return kept[0]
        shared = self._running.get(key) or self._start(key, make)
        shared.waiters += 1
        try:
            return await asyncio.shield(shared.task)
        finally:
            shared.waiters -= 1
            if shared.waiters == 0 and not shared.task.done():
                self._abandon(key, shared)

    async def aclose(self) -> None:
        """Cancel every running call, wait until each has ended, and forget what is kept."""
        running = [shared.task for shared in self._running.values()] + list(self._abandoned)
        self._running.clear()
        self._kept.clear()
        self._weight = 0
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def kept(self) -> int:
        return len(self._kept)

    def _start(self, key: Hashable, make: Callable[[], Awaitable[V]]) -> _Call[V]:
        shared = _Call(asyncio.ensure_future(make()))
        self._running[key] = shared
        shared.task.add_done_callback(lambda task: self._finished(key, shared, task))
        self.made += 1
        return shared

    def _abandon(self, key: Hashable, shared: _Call[V]) -> None:
        """No caller waits any more: the call is cancelled, and a new caller starts afresh."""
        shared.task.cancel()
        self._abandoned.add(shared.task)
        shared.task.add_done_callback(self._abandoned.discard)
        if self._running.get(key) is shared:
            del self._running[key]

    def _finished(self, key: Hashable, shared: _Call[V], task: asyncio.Future[V]) -> None:
        if self._running.get(key) is shared:
            del self._running[key]
        if task.cancelled() or task.exception() is not None:
            return
        self._keep(key, task.result())

    def _keep(self, key: Hashable, value: V) -> None:
        weight = self._weigh(value)
        if weight > self._budget:
            return
        old = self._kept.pop(key, None)
        if old is not None:
            self._weight -= old[1]
        self._kept[key] = (value, weight)
        self._weight += weight
        while self._weight > self._budget:
            _, (_, dropped) = self._kept.popitem(last=False)
            self._weight -= dropped
