"""A streamed chat completion's events (cord_proxy/api/chat_events.py), with no transport: their
order, keep-alives, one error event in place of the rest, and no decode left running however
the iteration ends."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cord_proxy.api.chat_events import (
    Answer,
    Began,
    ChatEvent,
    Failed,
    Finished,
    KeepAlive,
    Reasoning,
    Usage,
    chat_events,
)
from cord_proxy.api.parsing import parse_chat_request
from cord_proxy.decoding.trace import DecodeResult
from cord_proxy.errors import TeacherUnreachableError
from cord_proxy.runtime import ChatJob
from tests.api.scripted import QUESTION, runtime, teacher
from tests.support.fakes import ScriptedFakeTeacher, wait_until


def _job(fake: ScriptedFakeTeacher, **body: Any) -> ChatJob:
    request = parse_chat_request({"model": "e", "messages": QUESTION, "stream": True, **body})
    return runtime(fake).job_for_request(request)


class Finishes:
    """The `finish` hook: records each result it is given, and when (by event count)."""

    def __init__(self, events: list[ChatEvent]):
        self.events = events
        self.results: list[tuple[int, DecodeResult]] = []

    async def __call__(self, result: DecodeResult) -> None:
        self.results.append((len(self.events), result))


async def _collect(job: ChatJob, keepalive_s: float = 15.0) -> tuple[list[ChatEvent], Finishes]:
    events: list[ChatEvent] = []
    finishes = Finishes(events)
    async for event in chat_events(job, 60.0, finishes, keepalive_s):
        events.append(event)
    return events, finishes


def _kinds(events: list[ChatEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


async def test_a_decode_is_told_in_order_and_each_step_once() -> None:
    job = _job(teacher(), stream_options={"include_usage": True})
    events, finishes = await _collect(job)
    kinds = _kinds(events)
    assert kinds[0] == "Began" and kinds[-2:] == ["Finished", "Usage"]
    assert "KeepAlive" not in kinds and "Failed" not in kinds
    [(at, result)] = finishes.results
    assert kinds[at:] == ["Answer", "Finished", "Usage"]  # finished before the answer is sent
    began, finished = events[0], events[-2]
    assert isinstance(began, Began) and began.choices == 1
    assert isinstance(finished, Finished) and finished.traces == result.traces[:1]
    assert finished.cord["ensemble"] == "e"
    reasoning = [e for e in events if isinstance(e, Reasoning)]
    sent = [step for e in reasoning for step in e.steps]
    assert sent == result.best.steps and len(sent) >= 2
    assert [e.first for e in reasoning] == [True] + [False] * (len(reasoning) - 1)
    [answer] = [e for e in events if isinstance(e, Answer)]
    assert answer.trace == result.best and answer.trace.answer.strip() == "42"
    usage = events[-1]
    assert isinstance(usage, Usage) and usage.prompt_tokens == result.prompt_tokens
    assert usage.reasoning_tokens == result.best.reasoning_tokens


async def test_usage_is_told_only_when_asked() -> None:
    events, _ = await _collect(_job(teacher()))
    assert _kinds(events)[-1] == "Finished"


async def test_a_quiet_decode_is_kept_alive() -> None:
    events, _ = await _collect(_job(teacher(propose_delay=0.2)), keepalive_s=0.02)
    kinds = _kinds(events)
    assert kinds.count("KeepAlive") >= 2
    assert kinds[0] == "Began" and kinds[-1] == "Finished"


@pytest.mark.parametrize(
    ("failure", "status", "unhandled"),
    [
        (TeacherUnreachableError("t", "connection refused"), 502, False),
        (RuntimeError("bug"), 500, True),
    ],
)
async def test_a_failure_is_one_error_event_in_place_of_the_rest(
    failure: BaseException, status: int, unhandled: bool
) -> None:
    events, finishes = await _collect(_job(teacher(proposals=[failure] * 4)))
    assert _kinds(events) == ["Began", "Failed"]
    failed = events[-1]
    assert isinstance(failed, Failed)
    assert failed.error.status == status and failed.unhandled is unhandled
    assert finishes.results == []


def _new_tasks(before: set[asyncio.Task[Any]]) -> list[asyncio.Task[Any]]:
    current = asyncio.current_task()
    return [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]


async def test_a_consumer_cancelled_while_waiting_leaves_no_decode_running() -> None:
    fake = teacher(propose_delay=60.0)
    before = asyncio.all_tasks()
    events = chat_events(_job(fake), 60.0, Finishes([]))
    assert isinstance(await anext(events), Began)
    waiting = asyncio.ensure_future(anext(events))
    await wait_until(lambda: fake.in_flight == 1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert fake.in_flight == 0
    assert [c.outcome for c in fake.calls] == ["cancelled"]
    assert _new_tasks(before) == []


async def test_events_closed_between_two_events_leave_no_decode_running() -> None:
    fake = teacher(propose_delay=60.0)
    before = asyncio.all_tasks()
    events = chat_events(_job(fake), 60.0, Finishes([]), keepalive_s=0.01)
    assert isinstance(await anext(events), Began)
    await wait_until(lambda: fake.in_flight == 1)  # the decode runs in a task of its own
    assert isinstance(await anext(events), KeepAlive)  # suspended at a yield, decode running
    assert fake.in_flight == 1
    await events.aclose()
    assert fake.in_flight == 0
    assert [c.outcome for c in fake.calls] == ["cancelled"]
    assert _new_tasks(before) == []
