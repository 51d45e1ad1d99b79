"""A dropped client no longer kills its decode at once, in-process over a scripted teacher
whose every call takes `DELAY` seconds: a retry attaches (one decode), a streaming retry
gets the stream from its start, and a client that never returns has its decode cancelled
after the grace, with no teacher call started after it."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from cord_proxy.api.app import create_app
from tests.api.scripted import QUESTION, runtime, teacher
from tests.support.fakes import ScriptedFakeTeacher

DELAY = 0.15  # every teacher call: a decode is about ten of them
BODY: dict[str, Any] = {"model": "e", "messages": QUESTION}
RETRY = {"x-stainless-retry-count": "1"}
CHAT = "/v1/chat/completions"


def slow() -> ScriptedFakeTeacher:
    return teacher(propose_delay=DELAY, score_delay=DELAY)


def serve(fake: ScriptedFakeTeacher, grace: float) -> TestClient[Any, Any]:
    """The proxy over `fake`; a client that disconnects has its handler cancelled, as in
    ``cord-proxy serve``."""
    app = create_app(runtime(fake, detach_grace_s=grace))
    return TestClient(TestServer(app, handler_cancellation=True))


async def one_decode_calls() -> int:
    """How many teacher calls one patient decode makes."""
    fake = slow()
    async with serve(fake, 5.0) as client:
        response = await client.post(CHAT, json=BODY)
        assert response.status == 200
    return len(fake.calls)


async def dropped(client: TestClient[Any, Any], after: float, **kwargs: Any) -> float:
    """Post, and leave after `after` seconds: the time it began to leave (the server hears of
    it after that)."""
    request = asyncio.ensure_future(client.post(CHAT, **kwargs))
    await asyncio.sleep(after)
    leaving = time.perf_counter()
    request.cancel()
    await asyncio.gather(request, return_exceptions=True)
    return leaving


async def detach_events(client: TestClient[Any, Any]) -> dict[str, float]:
    text = await (await client.get("/metrics")).text()
    found = {}
    for line in text.splitlines():
        if line.startswith("cord_detached_decodes_total{"):
            name, value = line.split(" ")
            found[name.split('"')[1]] = float(value)
    return found


async def until_event(client: TestClient[Any, Any], event: str, timeout: float = 10.0) -> None:
    """Wait until the proxy has counted `event` once (no teacher call being in flight is not
    enough: the decode may be between two of them)."""
    deadline = time.monotonic() + timeout
    while (await detach_events(client)).get(event) != 1:
        assert time.monotonic() < deadline, f"no {event} event in time"
        await asyncio.sleep(0.05)


async def until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_a_retry_attaches_to_the_decode_its_first_try_left() -> None:
    calls = await one_decode_calls()
    fake = slow()
    async with serve(fake, 5.0) as client:
        await dropped(client, 2 * DELAY, json=BODY)
        await asyncio.sleep(DELAY)  # the SDK's back-off
        response = await client.post(CHAT, json=BODY, headers=RETRY)
        completion = await response.json()
        assert response.status == 200 and completion["choices"][0]["message"]["content"] == "42"
        assert len(fake.calls) == calls  # one decode, none cancelled
        assert all(call.outcome == "ok" for call in fake.calls)
        assert await detach_events(client) == {"attached": 1, "claimed": 1, "detached": 1}


async def test_a_retry_gets_the_result_of_a_decode_that_finished_unclaimed() -> None:
    fake = slow()
    async with serve(fake, 5.0) as client:
        await dropped(client, DELAY, json=BODY, headers={"Idempotency-Key": "k1"})
        await until_event(client, "finished_unclaimed")
        assert all(c.outcome == "ok" for c in fake.calls)
        calls = len(fake.calls)
        response = await client.post(CHAT, json=BODY, headers={"Idempotency-Key": "k1"})
        assert response.status == 200 and len(fake.calls) == calls


async def test_a_streaming_retry_gets_the_stream_from_its_start() -> None:
    calls = await one_decode_calls()
    fake = slow()
    body = {**BODY, "stream": True}
    async with serve(fake, 5.0) as client:
        first = await client.post(CHAT, json=body)
        assert first.status == 200
        await first.content.readuntil(b"\n\n")  # the role chunk, then it leaves
        await asyncio.sleep(2 * DELAY)
        first.close()
        await asyncio.sleep(DELAY)
        retry = await client.post(CHAT, json=body, headers=RETRY)
        text = await retry.text()
        assert await detach_events(client) == {"attached": 1, "claimed": 1, "detached": 1}
    chunks = [json.loads(x[6:]) for x in text.split("\n\n") if x.startswith("data: {")]
    assert text.endswith("data: [DONE]\n\n")
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"  # from the first event
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks[1:])
    answer = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[1:])
    assert "add the numbers" in reasoning and answer == "42"
    assert len({c["id"] for c in chunks}) == 1
    assert len(fake.calls) == calls and all(call.outcome == "ok" for call in fake.calls)


async def test_a_client_that_never_returns_is_cancelled_after_the_grace() -> None:
    grace = 3 * DELAY
    fake = slow()
    async with serve(fake, grace) as client:
        left = await dropped(client, DELAY, json=BODY)
        await asyncio.sleep(grace + DELAY)
        deadline = left + grace
        assert all(call.outcome != "running" for call in fake.calls)
        cut = [call.ended for call in fake.calls if call.outcome == "cancelled"]
        assert cut and min(cut) >= deadline  # the decode ran on for the grace
        assert max(call.started for call in fake.calls) <= min(cut)  # none started after
        assert min(cut) <= deadline + 0.5
        made = len(fake.calls)
        await asyncio.sleep(3 * DELAY)
        assert len(fake.calls) == made  # nothing started since
        assert await detach_events(client) == {"cancelled_after_grace": 1, "detached": 1}
        metrics = await (await client.get("/metrics")).text()
        assert "cord_requests_in_flight 0" in metrics  # its slot is free again


async def test_the_same_body_from_two_clients_without_a_marker_is_two_decodes() -> None:
    calls = await one_decode_calls()
    fake = slow()
    async with serve(fake, 5.0) as client:
        await dropped(client, 2 * DELAY, json=BODY)  # left, and its decode runs on
        first, second = await asyncio.gather(
            client.post(CHAT, json=BODY), client.post(CHAT, json=BODY)
        )
        ids = {(await first.json())["id"], (await second.json())["id"]}
        assert len(ids) == 2
        await until_event(client, "finished_unclaimed")  # the detached one
        assert len(fake.calls) == 3 * calls  # the detached one, and one each
        assert "attached" not in await detach_events(client)


async def test_a_grace_of_zero_cancels_at_once() -> None:
    fake = slow()
    async with serve(fake, 0.0) as client:
        left = await dropped(client, 2 * DELAY, json=BODY)
        await until(lambda: all(call.outcome != "running" for call in fake.calls), timeout=1.0)
        assert max(call.started for call in fake.calls) <= left + 0.5  # a decode is ~1.5 s
        assert await detach_events(client) == {}
