"""Every request's id (cord_proxy/api/request_id.py): an ``x-request-id`` header on every
answer (errors and streams included), and the ``request_id`` of every log line logged while it
is served, so the ``request`` line and ``decode finished`` join on the header's value."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cord_proxy.logs import REQUEST_ID, JsonFormatter, RedactFilter
from cord_proxy.ui.view import view_app
from tests.api.scripted import QUESTION, server, teacher

KEY = "request-id-test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}
AN_ID = re.compile(r"req_[0-9a-f]{32}")


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUEST_ID_TEST_KEY", KEY)


@pytest.fixture
def logged() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The proxy's log lines so far, as the JSON its handler writes (logs.py), parsed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactFilter())
    logger = logging.getLogger("cord_proxy")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _request_id(headers: Any) -> str:
    request_id = headers["x-request-id"]
    assert AN_ID.fullmatch(request_id), request_id
    return str(request_id)


async def test_every_answer_carries_its_own_request_id() -> None:
    chat = {"model": "e", "messages": QUESTION}
    async with TestClient(server(teacher(), api_keys=["env:REQUEST_ID_TEST_KEY"])) as client:
        answers = [
            await client.get("/v1/models", headers=AUTH),
            await client.get("/v1/models"),  # 401
            await client.get("/no/such/route"),  # 404
            await client.delete("/v1/models", headers=AUTH),  # 405
            await client.post("/v1/chat/completions", data=b"{", headers=AUTH),  # 400
            await client.post("/v1/chat/completions", json=chat, headers=AUTH),
            await client.post("/v1/chat/completions", json={**chat, "stream": True}, headers=AUTH),
            await client.get("/health"),
            await client.get("/ui"),
        ]
        for answer in answers:
            await answer.read()
    assert [a.status for a in answers] == [200, 401, 404, 405, 400, 200, 200, 200, 200]
    ids = [_request_id(a.headers) for a in answers]
    assert len(set(ids)) == len(ids)


async def test_the_request_line_and_decode_finished_join_on_the_header(
    logged: Callable[[], list[dict[str, Any]]],
) -> None:
    chat = {"model": "e", "messages": QUESTION}
    async with TestClient(server(teacher(), api_keys=["env:REQUEST_ID_TEST_KEY"])) as client:
        whole = await client.post("/v1/chat/completions", json=chat, headers=AUTH)
        completion = await whole.json()
        stream = await client.post(
            "/v1/chat/completions", json={**chat, "stream": True}, headers=AUTH
        )
        streamed = await stream.text()
        refused = await client.get("/v1/models")
    assert REQUEST_ID.get() is None  # nothing leaks out of a request
    log_lines = logged()
    for answer, status in ((whole, 200), (stream, 200), (refused, 401)):
        request_id = _request_id(answer.headers)
        mine = [line for line in log_lines if line.get("request_id") == request_id]
        [request] = [line for line in mine if line["event"] == "request"]
        assert request["status"] == status
    whole_id, stream_id = _request_id(whole.headers), _request_id(stream.headers)
    finished = {
        line["request_id"]: line for line in log_lines if line["event"] == "decode finished"
    }
    assert set(finished) == {whole_id, stream_id}
    assert finished[whole_id]["completion_id"] == completion["id"]
    assert finished[stream_id]["completion_id"] in streamed
    assert all(line.get("request_id") for line in log_lines if line["event"] == "request")


async def test_the_trace_viewer_answers_with_request_ids_too(tmp_path: Path) -> None:
    traces = tmp_path / "traces.jsonl"
    traces.write_text("")
    async with TestClient(TestServer(view_app(traces))) as client:
        info = await client.get("/ui/api/info")
        missing = await client.get("/ui/api/traces/7")
    assert info.status == 200 and missing.status == 404
    assert _request_id(info.headers) != _request_id(missing.headers)


def test_a_line_logged_outside_a_request_has_no_request_id() -> None:
    record = logging.LogRecord("cord_proxy.x", logging.INFO, "", 0, "started", None, None)
    assert "request_id" not in json.loads(JsonFormatter().format(record))
    token = REQUEST_ID.set("req_1")
    try:
        assert json.loads(JsonFormatter().format(record))["request_id"] == "req_1"
        record.request_id = "req_own"  # a record that names its own keeps it
        assert json.loads(JsonFormatter().format(record))["request_id"] == "req_own"
    finally:
        REQUEST_ID.reset(token)


async def test_an_answer_of_the_catch_all_handler_carries_its_request_id() -> None:
    crashing = teacher(proposals=[RuntimeError("bug")])
    chat = {"model": "e", "messages": QUESTION}
    async with TestClient(server(crashing, api_keys=["env:REQUEST_ID_TEST_KEY"])) as client:
        response = await client.post("/v1/chat/completions", json=chat, headers=AUTH)
        await response.read()
    assert response.status == 500
    _request_id(response.headers)
