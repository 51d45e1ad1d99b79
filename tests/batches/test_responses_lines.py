"""Batches of ``/v1/responses`` lines: each line checked as a Responses create body, decoded
as the Responses route decodes it, and answered with a Response object."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Final

import pytest
from openai.types.responses import Response

from cord_proxy.batches.validate import LineProblem, parse_line
from tests.batches.conftest import TINY, batch_config, jsonl, question, sdk, wait_for
from tests.batches.teacher_tap import TeacherTap
from tests.support.proxy_process import ProxyProcess

URL: Final = "/v1/responses"


def responses_line(index: int, **body: Any) -> dict[str, Any]:
    return {
        "custom_id": f"r-{index}",
        "method": "POST",
        "url": URL,
        "body": {
            "model": "cord",
            "input": question(index),
            "cord": {**TINY, "reference_answer": str(2 * index + 34)},
            **body,
        },
    }


def _raw(line: dict[str, Any]) -> bytes:
    return json.dumps(line).encode()


def test_a_good_line_parses() -> None:
    line = responses_line(0, instructions="Be brief.", reasoning={"effort": "low"})
    custom_id, body = parse_line(_raw(line), URL)
    assert custom_id == "r-0" and body["input"] == question(0)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_output_tokens": 0}, "body.max_output_tokens"),
        ({"no_such_field": 1}, "body.no_such_field"),
        ({"text": {"format": {"type": "xml"}}}, "body.text.format.type"),
        ({"temperature": 5}, "body.temperature"),
        ({"reasoning": {"effort": "enormous"}}, "body.reasoning.effort"),
        ({"tools": [{"type": "web_search"}]}, "body.tools"),
        ({"stream": True}, "body.stream"),
        ({"background": True}, "body.background"),
        ({"previous_response_id": "resp_abc"}, "body.previous_response_id"),
    ],
)
def test_a_bad_line_names_its_field(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(LineProblem) as caught:
        parse_line(_raw(responses_line(0, **fields)), URL)
    assert caught.value.param == param, caught.value.message
    assert caught.value.code == "invalid_request"


def test_a_chat_line_is_not_a_responses_line() -> None:
    line = {**responses_line(0), "url": "/v1/chat/completions"}
    with pytest.raises(LineProblem) as caught:
        parse_line(_raw(line), URL)
    assert caught.value.param == "url"
    chat_body = {"model": "cord", "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(LineProblem) as caught:
        parse_line(_raw({**responses_line(0), "body": chat_body}), URL)
    assert caught.value.param == "body.input"  # the first problem: no input


@pytest.fixture(scope="module")
def proxy(tap: TeacherTap, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    workdir = tmp_path_factory.mktemp("batches-responses")
    process = ProxyProcess(batch_config(tap.base_url, workdir / "data", concurrency=3), workdir)
    yield process.start()
    process.stop()


def _submit(proxy: ProxyProcess, lines: list[dict[str, Any]]) -> Any:
    client = sdk(proxy)
    uploaded = client.files.create(file=("responses.jsonl", jsonl(lines)), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint=URL, completion_window="24h")
    assert batch.endpoint == URL
    return wait_for(client, batch.id, ("completed", "failed", "cancelled"))


def test_three_responses_lines_complete_as_response_objects(proxy: ProxyProcess) -> None:
    lines = [responses_line(0), responses_line(1, instructions="Answer with a number.")]
    lines.append(
        responses_line(
            2, input=[{"role": "user", "content": [{"type": "input_text", "text": question(2)}]}]
        )
    )
    batch = _submit(proxy, lines)
    assert batch.status == "completed", batch.errors
    counts = batch.request_counts
    assert counts is not None and (counts.total, counts.completed, counts.failed) == (3, 3, 0)
    assert batch.output_file_id and batch.error_file_id is None
    text = sdk(proxy).files.content(batch.output_file_id).text
    outputs = [json.loads(x) for x in text.splitlines()]
    assert sorted(o["custom_id"] for o in outputs) == ["r-0", "r-1", "r-2"]
    for output in outputs:
        assert output["error"] is None and output["response"]["status_code"] == 200
        body = output["response"]["body"]
        response = Response.model_validate(body)
        assert response.object == "response" and response.model == "cord"
        assert response.status in ("completed", "incomplete")
        assert response.id.startswith("resp_") and response.id == output["response"]["request_id"]
        reasoning, message = response.output
        assert reasoning.type == "reasoning" and reasoning.content
        assert reasoning.content[0].type == "reasoning_text"
        assert reasoning.content[0].text.startswith("### Step 1.")
        assert message.type == "message" and message.content[0].type == "output_text"
        assert response.output_text == message.content[0].text
        assert response.usage is not None
        assert response.usage.output_tokens_details.reasoning_tokens > 0
        assert body["cord"]["ensemble"] == "cord" and body["cord"]["reference_used"] is True
        assert body["cord"]["messages"][-1]["role"] == "user"
    by_id = {o["custom_id"]: o["response"]["body"] for o in outputs}
    assert by_id["r-1"]["instructions"] == "Answer with a number."
    assert by_id["r-1"]["cord"]["messages"][0] == {
        "role": "system",
        "content": "Answer with a number.",
    }
    assert by_id["r-2"]["cord"]["messages"] == [{"role": "user", "content": question(2)}]


def test_a_bad_responses_line_fails_validation_naming_its_field(proxy: ProxyProcess) -> None:
    lines = [responses_line(0), responses_line(1, max_output_tokens=0), responses_line(2)]
    batch = _submit(proxy, lines)
    assert batch.status == "failed"
    assert batch.errors is not None and batch.errors.data
    error = batch.errors.data[0]
    assert error.line == 2 and error.param == "body.max_output_tokens"
    assert error.code == "invalid_request" and error.message and "line 2" in error.message
    assert batch.request_counts is None or batch.request_counts.total == 0


def test_a_chat_batch_still_completes_beside_them(proxy: ProxyProcess) -> None:
    client = sdk(proxy)
    line = {
        "custom_id": "c-0",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "cord",
            "messages": [{"role": "user", "content": question(0)}],
            "cord": {**TINY, "reference_answer": "34"},
        },
    }
    uploaded = client.files.create(file=("chat.jsonl", jsonl([line])), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    batch = wait_for(client, batch.id, ("completed", "failed", "cancelled"))
    assert batch.status == "completed", batch.errors
    assert batch.output_file_id
    body = json.loads(client.files.content(batch.output_file_id).text)["response"]["body"]
    assert body["object"] == "chat.completion"
