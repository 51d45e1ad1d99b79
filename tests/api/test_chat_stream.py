"""The chat stream's writer (cord_proxy/api/chat_stream.py) on the wire, in-process: the role
first, reasoning then content deltas, the finish chunk with ``cord``, usage, ``[DONE]``; a
keep-alive comment while the decode is quiet; one error event, then ``[DONE]``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from cord_proxy.api import chat_events
from cord_proxy.errors import TeacherUnreachableError
from tests.api.scripted import QUESTION, server, teacher
from tests.support.fakes import ScriptedFakeTeacher

BODY = {"model": "e", "messages": QUESTION, "stream": True}


async def _stream(fake: ScriptedFakeTeacher, **body: Any) -> tuple[int, dict[str, str], str]:
    async with TestClient(server(fake)) as client:
        response = await client.post("/v1/chat/completions", json={**BODY, **body})
        return response.status, dict(response.headers), await response.text()


def _data(text: str) -> list[Any]:
    return [
        json.loads(line.removeprefix("data: "))
        for line in text.split("\n\n")
        if line.startswith("data: {")
    ]


async def test_a_stream_sends_role_reasoning_answer_finish_usage_and_done() -> None:
    fake = teacher()
    status, headers, text = await _stream(fake, stream_options={"include_usage": True})
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    assert text.endswith("data: [DONE]\n\n") and ": keep-alive" not in text
    chunks = _data(text)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [c["choices"][0]["delta"] for c in chunks[1:-2]]
    reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
    content = "".join(d.get("content", "") for d in deltas)
    assert "add the numbers" in reasoning and content.strip() == "42"
    first_content = next(i for i, d in enumerate(deltas) if "content" in d)
    assert all("content" in d for d in deltas[first_content:])  # no reasoning after the answer
    finish, usage = chunks[-2], chunks[-1]
    assert finish["choices"][0]["finish_reason"] == "stop" and finish["cord"]["ensemble"] == "e"
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] > 0
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}


async def test_a_quiet_decode_gets_keep_alive_comments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chat_events, "KEEPALIVE_S", 0.02)
    fake = teacher(propose_delay=0.2)
    status, _, text = await _stream(fake)
    assert status == 200
    assert text.count(": keep-alive\n\n") >= 2
    assert text.endswith("data: [DONE]\n\n")
    assert _data(text)[-1]["choices"][0]["finish_reason"] == "stop"


async def test_a_failed_stream_ends_with_one_error_event_then_done() -> None:
    refused = TeacherUnreachableError("t", "connection refused at http://10.9.8.7:1/v1")
    fake = teacher(proposals=[refused] * 4)
    status, _, text = await _stream(fake)
    assert status == 200
    assert text.endswith("data: [DONE]\n\n")
    chunks = _data(text)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    error = chunks[-1]["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "10.9.8.7" not in text
    assert all("error" not in c for c in chunks[:-1])


async def test_a_stream_ended_by_a_bug_is_counted_as_its_200_a_stream_error_and_a_bug() -> None:
    async with TestClient(server(teacher(proposals=[RuntimeError("bug")] * 4))) as client:
        response = await client.post("/v1/chat/completions", json=BODY)
        text = await response.text()
        metrics = await (await client.get("/metrics")).text()
    assert response.status == 200 and text.endswith("data: [DONE]\n\n")
    assert _data(text)[-1]["error"]["type"] == "server_error"
    assert 'cord_requests_total{route="/v1/chat/completions",status="200"} 1' in metrics
    assert 'cord_stream_errors_total{route="/v1/chat/completions",status="500"} 1' in metrics
    assert "cord_unhandled_errors_total 1" in metrics
