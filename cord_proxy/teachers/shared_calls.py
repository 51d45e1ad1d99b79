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
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, TypeVar

import orjson

V = TypeVar("V")
Asked = tuple[Hashable, Callable[[], Awaitable[V]]]  # a call's key, and what makes it


def request_key(url: str, body: dict[str, Any]) -> bytes:
    """The key of a JSON request: the same for the same URL and body, whatever the order of
    the body's fields. It is the URL and the body's JSON itself, exact: a digest of it cost
    1.6 to 4 us a request, and a kept answer weighs more than its key."""
    return url.encode() + b"\0" + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


@dataclass(eq=False)
class _Call(Generic[V]):
    """A running call: its task, its callers, and the groups told when it ends (`settles`,
    called in order by the task's one done callback rather than each by a callback of its own)."""

    key: Hashable
    task: asyncio.Future[V]
    waiters: int = 0
    settles: list[Callable[[asyncio.Future[V]], None]] = field(default_factory=list)


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
        kept = self._kept_answer(key)
        if kept is not None:
            return kept[0]
        shared = self._join(key, make)
        try:
            return await asyncio.shield(shared.task)
        finally:
            self._leave(key, shared)

    async def call_groups(
        self, groups: Sequence[Sequence[Asked[V]]]
    ) -> list[list[V] | BaseException]:
        """Each group's answers in order, or the error of the first of its calls to fail.

        Every call runs at once, shared as `call` shares them, and the caller waits on the
        calls themselves rather than on a task of its own per call (a round's scoring asks
        for many prompts at once). When a call fails, its group leaves its other calls at
        once, as a cancelled `call` leaves them; the caller returns when every group has
        its answers or its error. A caller cancelled while it waits leaves every call.
        """
        gathering = _Gathering(self, groups)
        try:
            if gathering.left:
                await gathering.ended
        finally:
            gathering.leave_all()
        return gathering.outcomes()

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

    def _kept_answer(self, key: Hashable) -> tuple[V, int] | None:
        """The kept (answer, weight) of `key`, now the most recent; None when none is kept."""
        kept = self._kept.get(key)
        if kept is not None:
            self._kept.move_to_end(key)
        return kept

    def _start(self, key: Hashable, make: Callable[[], Awaitable[V]]) -> _Call[V]:
        shared = _Call(key, asyncio.ensure_future(make()))
        self._running[key] = shared
        shared.task.add_done_callback(partial(self._finished, shared))
        self.made += 1
        return shared

    def _join(self, key: Hashable, make: Callable[[], Awaitable[V]]) -> _Call[V]:
        shared = self._running.get(key) or self._start(key, make)
        shared.waiters += 1
        return shared

    def _leave(self, key: Hashable, shared: _Call[V]) -> None:
        shared.waiters -= 1
        if shared.waiters == 0 and not shared.task.done():
            self._abandon(key, shared)

    def _abandon(self, key: Hashable, shared: _Call[V]) -> None:
        """No caller waits any more: the call is cancelled, and a new caller starts afresh."""
        shared.task.cancel()
        self._abandoned.add(shared.task)
        shared.task.add_done_callback(self._abandoned.discard)
        if self._running.get(key) is shared:
            del self._running[key]

    def _finished(self, shared: _Call[V], task: asyncio.Future[V]) -> None:
        key = shared.key
        if self._running.get(key) is shared:
            del self._running[key]
        if not task.cancelled() and task.exception() is None:
            self._keep(key, task.result())
        settles, shared.settles = shared.settles, []
        for settle in settles:
            settle(task)

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


@dataclass(eq=False)
class _Group(Generic[V]):
    """One group of `call_groups`: its answers so far, the calls it waits for (by place)."""

    answers: list[Any]
    waiting: list[tuple[int, Hashable, _Call[V]]]
    pending: int
    error: BaseException | None = None
    ended: bool = False


class _Gathering(Generic[V]):
    """The groups of one `call_groups`, settled as their calls end (done callbacks)."""

    def __init__(self, owner: SharedCalls[V], groups: Sequence[Sequence[Asked[V]]]):
        self.owner = owner
        self.groups: list[_Group[V]] = []
        self.left = 0
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for asked in groups:
            group = self._group(asked)
            self.groups.append(group)
            if group.pending:
                self.left += 1
            else:
                group.ended = True
        for group in self.groups:
            for place, _, shared in group.waiting:
                shared.settles.append(partial(self._settle, group, place))

    def _group(self, asked: Sequence[Asked[V]]) -> _Group[V]:
        answers: list[Any] = []
        waiting: list[tuple[int, Hashable, _Call[V]]] = []
        for key, make in asked:
            kept = self.owner._kept_answer(key)
            if kept is not None:
                answers.append(kept[0])
            else:
                waiting.append((len(answers), key, self.owner._join(key, make)))
                answers.append(None)
        return _Group(answers, waiting, len(waiting))

    def _settle(self, group: _Group[V], place: int, task: asyncio.Future[V]) -> None:
        if group.ended:
            return
        if task.cancelled() or task.exception() is not None:
            group.error = _error(task)
            self._end(group)
            return
        group.answers[place] = task.result()
        group.pending -= 1
        if group.pending == 0:
            self._end(group)

    def _end(self, group: _Group[V]) -> None:
        group.ended = True
        self._leave(group)
        self.left -= 1
        if self.left == 0 and not self.ended.done():
            self.ended.set_result(None)

    def _leave(self, group: _Group[V]) -> None:
        waiting, group.waiting = group.waiting, []
        for _, key, shared in waiting:
            self.owner._leave(key, shared)

    def leave_all(self) -> None:
        """Leave the calls of every group still waiting (its caller is gone)."""
        for group in self.groups:
            group.ended = True
            self._leave(group)

    def outcomes(self) -> list[list[V] | BaseException]:
        return [group.error or group.answers for group in self.groups]


def _error(task: asyncio.Future[V]) -> BaseException:
    """A failed call's error (a cancelled call's is a `CancelledError`)."""
    if task.cancelled():
        return asyncio.CancelledError()
    error = task.exception()
    assert error is not None
    return error
