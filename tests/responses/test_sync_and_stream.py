"""``responses.create`` in its sync and streamed forms, with the openai SDK against the real
proxy and the real local teacher: a reasoning item and a message; every event parsed."""

from __future__ import annotations

import httpx
from openai.types.responses import Response

from tests.responses.conftest import TINY, sdk
from tests.support.proxy_process import ProxyProcess


def test_sync_gives_a_reasoning_item_and_a_message(proxy: ProxyProcess) -> None:
    client = sdk(proxy)
    raw = client.responses.with_raw_response.create(
        model="cord",
        input="What is 2 + 3?",
        instructions="Answer briefly.",
        max_output_tokens=200,
        reasoning={"effort": "low"},
        metadata={"run": "sync"},
        extra_body={"cord": {**TINY, "reference_answer": "5"}},
    )
    Response.model_validate(raw.http_response.json())
    response = raw.parse()
    assert response.status in ("completed", "incomplete")
    kinds = [item.type for item in response.output]
    assert kinds == ["reasoning", "message"]
    reasoning = response.output[0]
    assert reasoning.type == "reasoning" and reasoning.content
    assert reasoning.content[0].type == "reasoning_text" and reasoning.content[0].text
    assert response.output_text == response.output[1].content[0].text  # type: ignore[union-attr]
    assert response.usage is not None
    assert response.usage.output_tokens_details.reasoning_tokens > 0
    assert response.metadata == {"run": "sync"}
    extra = response.model_extra or {}
    assert extra["cord"]["ensemble"] == "cord"
    assert extra["cord"]["messages"][0] == {"role": "system", "content": "Answer briefly."}


def test_stream_is_parsed_by_the_sdk(proxy: ProxyProcess) -> None:
    client = sdk(proxy)
    stream = client.responses.create(
        model="cord",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "What is 4 + 4?"}]}],
        stream=True,
        extra_body={"cord": {**TINY, "reference_answer": "8"}},
    )
    events = list(stream)
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert "response.reasoning_text.delta" in kinds and "response.output_text.done" in kinds
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response  # type: ignore[union-attr]
    reasoning = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
    assert final.output[0].content[0].text == reasoning
    answer = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert final.output_text == answer


def test_bad_input_is_a_400_never_a_500(proxy: ProxyProcess) -> None:
    url = proxy.base_url + "/responses"
    headers = {"Authorization": "Bearer sk-responses-a"}
    bodies = [
        {},
        {"model": "cord"},
        {"model": "cord", "input": 3},
        {"model": "cord", "input": "hi", "tools": [{"type": "web_search"}]},
        {"model": "cord", "input": "hi", "max_output_tokens": 0},
        {"model": "cord", "input": "hi", "reasoning": {"effort": "none"}},
        {"model": "cord", "input": "hi", "text": {"format": {"type": "xml"}}},
        {"model": "nope", "input": "hi"},
        {"model": "cord", "input": "hi", "background": True, "store": False},
        {"model": "cord", "input": "hi", "previous_response_id": "resp_missing"},
        {"model": "cord", "input": [{"role": "user", "content": [{"type": "input_image"}]}]},
        {"model": "cord", "input": "hi", "cord": {"beam_width": -1}},
    ]
    for body in bodies:
        got = httpx.post(url, json=body, headers=headers, timeout=30)
        assert got.status_code in (400, 404), (body, got.status_code, got.text)
        assert "error" in got.json() and got.json()["error"]["message"]
    for path in ("/responses/resp_nope", "/responses/resp_nope/input_items"):
        got = httpx.get(proxy.base_url + path, headers=headers, timeout=30)
        assert got.status_code == 404, got.text
