"""The registry of detachable decodes (cord_proxy/api/attach.py), without HTTP: who is a
retry of whom, attaching to a running decode, the grace, the kept results and their bounds."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from cord_proxy.api.attach import Decodes, Detachable, RequestIdentity, identity_of
from cord_proxy.errors import CordError

BODY = {"model": "e", "messages": [{"role": "user", "content": "hi"}], "stream": False}


def who(
    *, key: str = "k", body: str = "b", idempotency: str | None = None, retry: bool = False
) -> RequestIdentity:
    return RequestIdentity(key, body, idempotency, retry)


class Decode:
    """A decode the test finishes by hand: `release` it with a body, or let it hang."""

    def __init__(self) -> None:
        self.runs = 0
        self.cancelled = 0
        self.release = asyncio.Event()
        self.body = '{"ok": true}'

    async def __call__(self, entry: Detachable) -> None:
        self.runs += 1
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        entry.answer(self.body)


async def client(entry: Detachable) -> str:
    async with entry.attached():
        return await entry.result()


def follower(entry: Detachable) -> asyncio.Task[str]:
    return asyncio.ensure_future(client(entry))


async def drop(task: asyncio.Task[Any]) -> None:
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def events(log: list[str]) -> Decodes:
    return Decodes(0.2, log.append)


def test_a_retry_is_the_same_key_and_canonical_body_with_a_marker() -> None:
    def request(body: dict[str, Any], **headers: str) -> RequestIdentity:
        return identity_of(make_mocked_request("POST", "/", headers=headers), body)

    first = request(BODY, Authorization="Bearer sk-1")
    reordered = request(dict(reversed(list(BODY.items()))), Authorization="Bearer sk-1")
    assert first.same_request(reordered) and not first.retry
    assert not first.same_request(request(BODY, Authorization="Bearer sk-2"))
    assert not first.same_request(request(BODY))  # keyless is another owner
    assert request(BODY).same_request(request(BODY))  # both keyless
    assert not first.same_request(request({**BODY, "n": 1}, Authorization="Bearer sk-1"))
    assert request(BODY, **{"x-stainless-retry-count": "1"}).retry
    assert not request(BODY, **{"x-stainless-retry-count": "0"}).retry
    assert not request(BODY, **{"x-stainless-retry-count": "nope"}).retry
    keyed = request(BODY, **{"Idempotency-Key": "abc"})
    assert keyed.idempotency_key is not None
    assert keyed.idempotency_key == request(BODY, **{"Idempotency-Key": "abc"}).idempotency_key
    assert request(BODY, **{"Idempotency-Key": " "}).idempotency_key is None


async def test_no_marker_never_attaches_and_a_retry_takes_only_a_detached_decode() -> None:
    decodes = Decodes(5.0)
    decode = Decode()
    entry = decodes.start(who(), "c1", decode)
    following = follower(entry)
    await asyncio.sleep(0)
    assert decodes.find(who()) is None  # the same body, no marker: a decode of its own
    assert decodes.find(who(retry=True)) is None  # its client still follows it
    await drop(following)
    assert decodes.find(who()) is None
    assert decodes.find(who(retry=True, key="other")) is None
    assert decodes.find(who(retry=True, body="other")) is None
    assert decodes.find(who(retry=True)) is entry
    await decodes.aclose()


async def test_an_idempotency_key_attaches_only_to_its_own_decode() -> None:
    decodes = Decodes(5.0)
    entry = decodes.start(who(idempotency="A"), "c1", Decode())
    following = follower(entry)
    await asyncio.sleep(0)
    assert decodes.find(who(idempotency="A")) is entry  # even while its client follows
    assert decodes.find(who(idempotency="B")) is None
    await drop(following)
    assert decodes.find(who(retry=True)) is None  # started with a key: only that key
    assert decodes.find(who(idempotency="A", key="other")) is None
    await decodes.aclose()


async def test_a_retry_attaches_to_the_running_decode_and_gets_its_result() -> None:
    log: list[str] = []
    decodes = events(log)
    decode = Decode()
    entry = decodes.start(who(), "c1", decode)
    await drop(follower(entry))
    assert log == ["detached"]
    await asyncio.sleep(0.1)  # within the grace
    found = decodes.find(who(retry=True))
    assert found is entry
    retry = follower(found)
    await asyncio.sleep(0.3)  # past the first grace: the timer was stopped
    decode.release.set()
    assert await retry == decode.body
    assert decode.runs == 1 and decode.cancelled == 0
    assert log == ["detached", "attached", "claimed"]
    assert decodes.entries == []  # delivered once, then forgotten


async def test_nobody_within_the_grace_cancels_the_decode() -> None:
    log: list[str] = []
    decodes = events(log)
    decode = Decode()
    entry = decodes.start(who(), "c1", decode)
    await drop(follower(entry))
    await asyncio.sleep(0.1)
    assert decode.cancelled == 0
    await asyncio.sleep(0.2)
    assert decode.cancelled == 1 and entry.task is not None and entry.task.cancelled()
    assert log == ["detached", "cancelled_after_grace"]
    assert decodes.find(who(retry=True)) is None and decodes.entries == []


async def test_a_grace_of_zero_cancels_at_once_and_awaits_the_decode() -> None:
    decodes = Decodes(0)
    decode = Decode()
    entry = decodes.start(who(), "c1", decode)
    await drop(follower(entry))
    assert decode.cancelled == 1 and entry.task is not None and entry.task.done()
    assert decodes.entries == []


async def test_a_result_finished_unclaimed_is_kept_for_the_grace_then_dropped() -> None:
    log: list[str] = []
    decodes = events(log)
    decode = Decode()
    entry = decodes.start(who(), "c1", decode)
    await drop(follower(entry))
    decode.release.set()
    await asyncio.sleep(0.01)
    assert log == ["detached", "finished_unclaimed"] and decodes.kept == [entry]
    assert await client(decodes.find(who(retry=True)) or entry) == decode.body
    assert decodes.entries == [] and decodes.kept == []
    # another, never claimed: dropped after the grace
    other = decodes.start(who(body="b2"), "c2", Decode())
    assert isinstance(other.task, asyncio.Task)
    await drop(follower(other))
    other.answer("x")
    other.task.cancel()  # a decode cancelled by the app: failed, never kept
    await asyncio.sleep(0.01)
    assert decodes.entries == []


async def test_kept_results_are_bounded_by_count_and_bytes() -> None:
    log: list[str] = []
    decodes = Decodes(30.0, log.append, max_kept=2, max_kept_bytes=250)
    finished = []
    for index in range(3):
        decode = Decode()
        decode.body = "x" * 100
        entry = decodes.start(who(body=f"b{index}"), f"c{index}", decode)
        await drop(follower(entry))
        decode.release.set()
        await asyncio.sleep(0.01)
        finished.append(entry)
    assert decodes.kept == finished[1:]  # over the count: the oldest is dropped
    big = Decode()
    big.body = "y" * 200
    entry = decodes.start(who(body="big"), "big", big)
    await drop(follower(entry))
    big.release.set()
    await asyncio.sleep(0.01)
    assert decodes.kept == [entry]  # over the bytes: the oldest go first
    assert log.count("dropped") == 3
    await decodes.aclose()
    assert decodes.kept == []


async def test_a_failed_decode_is_not_kept() -> None:
    decodes = Decodes(30.0)

    async def failing(entry: Detachable) -> None:
        await asyncio.sleep(0.05)
        raise CordError("teachers down")

    entry = decodes.start(who(), "c1", failing)
    await drop(follower(entry))
    await asyncio.sleep(0.1)
    assert decodes.entries == [] and decodes.find(who(retry=True)) is None


async def test_a_follower_gets_the_stream_from_its_first_frame() -> None:
    decodes = Decodes(5.0)
    release = asyncio.Event()

    async def stream(entry: Detachable) -> None:
        entry.append([b"a", b"b"])
        await release.wait()
        entry.append([b"err"], error_status=502)
        entry.append([b"done"])

    entry = decodes.start(who(), "c1", stream)
    await asyncio.sleep(0.01)

    async def read() -> list[tuple[bytes, int | None]]:
        async with entry.attached():
            return [frame async for frame in entry.follow()]

    first, second = asyncio.ensure_future(read()), asyncio.ensure_future(read())
    await asyncio.sleep(0.01)
    release.set()
    expected = [(b"a", None), (b"b", None), (b"err", 502), (b"done", None)]
    assert await first == expected and await second == expected


@pytest.mark.parametrize("grace", [0.0, 0.2])
async def test_aclose_cancels_what_still_runs(grace: float) -> None:
    decodes = Decodes(grace)
    decode = Decode()
    entry = decodes.start(who(), "c1", decode)
    await asyncio.sleep(0)
    await decodes.aclose()
    assert decode.cancelled == 1 and entry.task is not None and entry.task.cancelled()
