"""``background: true`` with the openai SDK against the real proxy and the real local teacher:
polled to ``completed``, its stream resumed with ``starting_after``, cancelled, deleted,
invisible to another key; and a stored conversation continued by ``previous_response_id``."""

from __future__ import annotations

import time

import openai
import pytest

from tests.batches.teacher_tap import TeacherTap
from tests.responses.conftest import KEY_B, LONGER, TINY, sdk, wait_until
from tests.support.proxy_process import ProxyProcess


def test_background_is_queued_then_polled_to_completed(proxy: ProxyProcess) -> None:
    client = sdk(proxy)
    created = client.responses.create(
        model="cord",
        input="What is 6 + 7?",
        background=True,
        extra_body={"cord": {**TINY, "reference_answer": "13"}},
    )
    assert created.status == "queued" and created.background is True and created.output == []
    done = wait_until(client, created.id, ("completed", "incomplete", "failed"))
    assert done.status in ("completed", "incomplete"), done.error
    assert [item.type for item in done.output] == ["reasoning", "message"]
    assert done.usage is not None and done.usage.output_tokens_details.reasoning_tokens > 0
    items = client.responses.input_items.list(created.id)
    assert [(i.type, i.role) for i in items.data] == [("message", "user")]  # type: ignore[union-attr]


def test_stream_resumes_after_an_event(proxy: ProxyProcess) -> None:
    client = sdk(proxy)
    created = client.responses.create(
        model="cord",
        input="What is 12 + 30?",
        background=True,
        extra_body={"cord": {**LONGER, "reference_answer": "42"}},
    )
    first = []
    with client.responses.retrieve(created.id, stream=True) as stream:
        for event in stream:
            first.append(event)
            if len(first) == 3:
                break  # the reader drops its connection
    resumed = list(client.responses.retrieve(created.id, stream=True, starting_after=2))
    numbers = [e.sequence_number for e in first + resumed]
    assert numbers == list(range(len(numbers)))
    assert resumed[-1].type in ("response.completed", "response.incomplete")
    stored = list(client.responses.retrieve(created.id, stream=True, starting_after=2))
    assert [e.sequence_number for e in stored] == [e.sequence_number for e in resumed]
    assert [e.type for e in stored] == [e.type for e in resumed]


def test_cancel_and_delete(proxy: ProxyProcess, tap: TeacherTap) -> None:
    client = sdk(proxy)
    question = "What is 19 + 23?"
    with tap.holding(question):  # its calls wait at the tap: it is still running at the cancel
        created = client.responses.create(
            model="cord",
            input=question,
            background=True,
            extra_body={"cord": {**LONGER, "reference_answer": "42"}},
        )
        wait_until(client, created.id, ("in_progress",))
        tap.wait_for_call(question)
        cancelled = client.responses.cancel(created.id)
    assert cancelled.status == "cancelled"
    time.sleep(1)
    assert client.responses.retrieve(created.id).status == cancelled.status
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


def test_another_key_gets_404(proxy: ProxyProcess) -> None:
    client = sdk(proxy)
    created = client.responses.create(
        model="cord", input="What is 1 + 1?", extra_body={"cord": {**TINY, "reference_answer": "2"}}
    )
    other = sdk(proxy, KEY_B)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.cancel(created.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.input_items.list(created.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="cord", input="and?", previous_response_id=created.id)
    assert client.responses.retrieve(created.id).id == created.id


def test_previous_response_id_continues_the_conversation(proxy: ProxyProcess) -> None:
    client = sdk(proxy)
    first = client.responses.create(
        model="cord", input="What is 2 + 3?", extra_body={"cord": {**TINY, "reference_answer": "5"}}
    )
    second = client.responses.create(
        model="cord",
        input="And 5 times 2?",
        previous_response_id=first.id,
        extra_body={"cord": {**TINY, "reference_answer": "10"}},
    )
    cord = (second.model_extra or {})["cord"]
    assert cord["previous_response_id"] == first.id
    assert cord["messages"] == [
        {"role": "user", "content": "What is 2 + 3?"},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "And 5 times 2?"},
    ]
    assert second.previous_response_id == first.id
