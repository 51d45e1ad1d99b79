"""Identical /tokenize requests sent once, against a FAKE vLLM ``/tokenize`` that holds its
answers until told (what a real server cannot do on demand), counts the requests it started
and those whose client went away, and can fail on purpose.

Its tokenizer is cord_proxy/testing/fake_vllm_wire.py's. The real server's count is in
tests/integration/test_exact_spans.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web

from cord_proxy.errors import TeacherHTTPError
from cord_proxy.teachers.shared_calls import SharedCalls, request_key
from cord_proxy.teachers.span_scoring import SpanReader
from cord_proxy.testing import fake_vllm_wire as wire

T = TypeVar("T")
PROMPT = {"prompt": "<start_of_turn>user\nWhat is 6 times 7?", "add_special_tokens": True}


class GatedTokenizer:
    """A FAKE ``/tokenize``: each request waits for `gate`; `failures` first ones answer 500."""

    def __init__(self, failures: int = 0) -> None:
        self.gate = asyncio.Event()
        self.failures = failures
        self.started = 0
        self.cancelled = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.started += 1
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.failures > 0:
            self.failures -= 1
            return web.json_response({"error": {"message": "fake failure"}}, status=500)
        return web.json_response(wire.tokenize(body))

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[SpanReader]:
        """A span reader whose calls POST to this server, one plain request each."""
        app = web.Application()
        app.router.add_post("/tokenize", self.handle)
        runner = web.AppRunner(app, shutdown_timeout=0.5, handler_cancellation=True)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        base_url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
        session = aiohttp.ClientSession()

        async def post(url: str, body: dict[str, Any], read: Any) -> Any:
            async with session.post(url, json=body) as response:
                if response.status >= 400:
                    raise TeacherHTTPError("fake", "HTTP 500", http_status=response.status)
                return read(await response.json())

        try:
            yield SpanReader("fake", "fake-model", base_url, post)
        finally:
            self.gate.set()
            await session.close()
            await runner.cleanup()


async def until(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


async def test_identical_concurrent_requests_make_one_post_and_share_its_answer() -> None:
    fake = GatedTokenizer()
    async with fake.reader() as reader:
        waiters = [
            asyncio.ensure_future(reader.tokenize(PROMPT, with_pieces=False)) for _ in range(5)
        ]
        other = asyncio.ensure_future(reader.tokenize(PROMPT, with_pieces=True))
        await until(lambda: fake.started == 2)
        fake.gate.set()
        answers = await asyncio.gather(*waiters)
        await other
        assert fake.started == 2  # one for the five identical bodies, one for the other body
        assert all(answer == answers[0] for answer in answers)
        assert answers[0][0] == tuple(wire.render_ids(PROMPT))
        assert answers[0][2] == 2048
        again = await reader.tokenize(PROMPT, with_pieces=False)  # a recent answer is kept
    assert again == answers[0]
    assert fake.started == 2


async def test_a_cancelled_waiter_leaves_the_call_to_the_others() -> None:
    fake = GatedTokenizer()
    async with fake.reader() as reader:
        waiters = [
            asyncio.ensure_future(reader.tokenize(PROMPT, with_pieces=False)) for _ in range(3)
        ]
        await until(lambda: fake.started == 1)
        waiters[0].cancel()
        await asyncio.sleep(0.05)
        fake.gate.set()
        served = await asyncio.gather(*waiters[1:])
        assert waiters[0].cancelled()
    assert served[0] == served[1]
    assert served[0][0] == tuple(wire.render_ids(PROMPT))
    assert (fake.started, fake.cancelled) == (1, 0)


async def test_when_every_waiter_is_gone_the_call_is_cancelled() -> None:
    fake = GatedTokenizer()
    async with fake.reader() as reader:
        waiters = [
            asyncio.ensure_future(reader.tokenize(PROMPT, with_pieces=False)) for _ in range(3)
        ]
        await until(lambda: fake.started == 1)
        for waiter in waiters:
            waiter.cancel()
        await until(lambda: fake.cancelled == 1)  # the server saw its client go away
        fake.gate.set()
        answer = await reader.tokenize(PROMPT, with_pieces=False)  # a new call, not the dead one
    assert answer[0] == tuple(wire.render_ids(PROMPT))
    assert (fake.started, fake.cancelled) == (2, 1)


async def test_an_error_reaches_every_waiter_and_is_not_kept() -> None:
    fake = GatedTokenizer(failures=1)
    async with fake.reader() as reader:
        waiters = [
            asyncio.ensure_future(reader.tokenize(PROMPT, with_pieces=False)) for _ in range(3)
        ]
        await until(lambda: fake.started == 1)
        fake.gate.set()
        failed = await asyncio.gather(*waiters, return_exceptions=True)
        assert all(isinstance(e, TeacherHTTPError) and e.http_status == 500 for e in failed)
        answer = await reader.tokenize(PROMPT, with_pieces=False)
    assert answer[0] == tuple(wire.render_ids(PROMPT))
    assert fake.started == 2  # the failure was not kept: the next caller asked again


async def test_kept_answers_stay_within_the_weight_budget() -> None:
    shared: SharedCalls[str] = SharedCalls(budget=10, weigh=len)
    made: list[str] = []

    def maker(value: str) -> Any:
        async def make() -> str:
            made.append(value)
            return value

        return make

    for value in ("aaaa", "bbbb", "cccc", "x" * 11):
        assert await shared.call(value, maker(value)) == value
    assert shared.kept == 2  # "aaaa" went to make room; the over-budget answer is never kept
    for value in ("cccc", "bbbb", "aaaa", "x" * 11):
        await shared.call(value, maker(value))
    assert made == ["aaaa", "bbbb", "cccc", "x" * 11, "aaaa", "x" * 11]
    assert shared.running == 0


def test_a_request_key_ignores_the_order_of_fields_but_not_their_values() -> None:
    url = "http://teacher/tokenize"
    assert request_key(url, {"a": 1, "b": [2]}) == request_key(url, {"b": [2], "a": 1})
    assert request_key(url, {"a": 1}) != request_key(url, {"a": 2})
    assert request_key(url, {"a": 1}) != request_key(url + "x", {"a": 1})


@pytest.mark.parametrize("waiters", [1, 4])
async def test_a_call_whose_waiters_were_cancelled_is_not_kept(waiters: int) -> None:
    shared: SharedCalls[int] = SharedCalls(budget=10, weigh=lambda _v: 1)
    started = asyncio.Event()
    cancelled: list[bool] = []

    async def slow() -> int:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return 1

    tasks = [asyncio.ensure_future(shared.call("k", slow)) for _ in range(waiters)]
    await started.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0)
    assert cancelled == [True]
    assert (shared.running, shared.kept, shared.made) == (0, 0, 1)


async def test_aclose_cancels_the_running_calls_waits_for_them_and_forgets_what_is_kept() -> None:
    shared: SharedCalls[int] = SharedCalls(budget=10, weigh=lambda _v: 1)
    ended: list[str] = []

    async def quick() -> int:
        return 1

    async def slow() -> int:
        try:
            await asyncio.sleep(30)
        finally:
            ended.append("slow")
        return 2

    assert await shared.call("kept", quick) == 1
    waiter = asyncio.ensure_future(shared.call("running", slow))
    await asyncio.sleep(0.01)
    assert (shared.running, shared.kept) == (1, 1)
    await shared.aclose()
    assert ended == ["slow"]  # ended before aclose returned, not later
    assert (shared.running, shared.kept) == (0, 0)
    with pytest.raises(asyncio.CancelledError):
        await waiter


def _answering(gates: dict[str, asyncio.Event], made: list[str], fail: str = "") -> Any:
    """A maker for each key: its call waits for the key's gate, then answers the key (or
    fails, for `fail`); `made` lists the calls started."""

    def maker(key: str) -> Any:
        async def make() -> str:
            made.append(key)
            await gates.setdefault(key, asyncio.Event()).wait()
            if key == fail:
                raise TeacherHTTPError("fake", "HTTP 500", http_status=500)
            return key

        return make

    return maker


async def test_groups_get_their_answers_in_order_and_share_identical_calls() -> None:
    shared: SharedCalls[str] = SharedCalls(budget=10, weigh=lambda _v: 1)
    gates: dict[str, asyncio.Event] = {}
    made: list[str] = []
    make = _answering(gates, made)
    gates["kept"] = asyncio.Event()
    gates["kept"].set()
    assert await shared.call("kept", make("kept")) == "kept"
    asked = [[(k, make(k)) for k in group] for group in (["b", "kept"], ["b", "c"], ["kept"])]
    caller = asyncio.ensure_future(shared.call_groups(asked))
    await until(lambda: made == ["kept", "b", "c"])  # "b" once for both groups
    gates["c"].set()
    gates["b"].set()
    assert await caller == [["b", "kept"], ["b", "c"], ["kept"]]
    assert (shared.running, shared.kept) == (0, 3)


async def test_a_failed_call_leaves_its_group_s_other_calls_and_spares_other_groups() -> None:
    shared: SharedCalls[str] = SharedCalls(budget=10, weigh=lambda _v: 1)
    gates: dict[str, asyncio.Event] = {}
    made: list[str] = []
    make = _answering(gates, made, fail="bad")
    asked = [[(k, make(k)) for k in group] for group in (["bad", "slow"], ["good"])]
    caller = asyncio.ensure_future(shared.call_groups(asked))
    await until(lambda: len(made) == 3)
    gates["bad"].set()
    gates["good"].set()
    outcomes = await asyncio.wait_for(caller, 5)  # "slow" never answers: no longer waited for
    assert isinstance(outcomes[0], TeacherHTTPError) and outcomes[1] == ["good"]
    await asyncio.sleep(0)
    assert shared.running == 0  # "slow" had no other caller: it was cancelled


async def test_a_cancelled_group_caller_leaves_calls_that_others_still_wait_for() -> None:
    shared: SharedCalls[str] = SharedCalls(budget=10, weigh=lambda _v: 1)
    gates: dict[str, asyncio.Event] = {}
    made: list[str] = []
    make = _answering(gates, made)
    caller = asyncio.ensure_future(shared.call_groups([[("a", make("a")), ("b", make("b"))]]))
    other = asyncio.ensure_future(shared.call("a", make("a")))
    await until(lambda: made == ["a", "b"])
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await asyncio.sleep(0)
    assert shared.running == 1  # "b" was cancelled; "a" goes on for the other caller
    gates["a"].set()
    assert await other == "a"
