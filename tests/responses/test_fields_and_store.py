"""The Responses request without a server: every key the openai SDK sends is classified, the
no-op values of refused fields pass, the conversion to the chat request, and the stored
responses' retention bounds."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from openai.types.responses import response_create_params

from cord_proxy.errors import InvalidRequestError, UnsupportedFieldError
from cord_proxy.responses.conversion import chat_request, conversation
from cord_proxy.responses.fields import BY_NAME
from cord_proxy.responses.request import parse_response_request
from cord_proxy.responses.store import ResponseStore

BASE: dict[str, Any] = {"model": "cord", "input": "What is 2 + 3?"}


def test_every_sdk_key_is_classified() -> None:
    keys = set(response_create_params.ResponseCreateParamsBase.__annotations__) | {"stream"}
    assert keys - set(BY_NAME) == set()
    assert set(BY_NAME) - keys == set()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("tools", []),
        ("tool_choice", "auto"),
        ("tool_choice", "none"),
        ("max_tool_calls", None),
        ("top_logprobs", 0),
        ("prompt", None),
        ("conversation", None),
        ("include", []),
        ("truncation", "disabled"),
        ("stream_options", {"include_obfuscation": False}),
        ("parallel_tool_calls", True),
    ],
)
def test_values_that_ask_nothing_pass(name: str, value: Any) -> None:
    parse_response_request({**BASE, name: value})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("tools", [{"type": "web_search"}]),
        ("tool_choice", "required"),
        ("conversation", "conv_1"),
        ("top_logprobs", 3),
    ],
)
def test_refused_fields_are_a_400_that_names_them(name: str, value: Any) -> None:
    with pytest.raises(UnsupportedFieldError) as caught:
        parse_response_request({**BASE, name: value})
    assert caught.value.param == name and caught.value.status == 400


def test_conversion_to_the_chat_request() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    request = parse_response_request(
        {
            **BASE,
            "instructions": "Be brief.",
            "max_output_tokens": 64,
            "reasoning": {"effort": "low", "summary": "auto"},
            "text": {"format": {"type": "json_schema", "name": "sum", "schema": schema}},
            "metadata": {"k": "v"},
            "cord": {"max_steps": 2},
        }
    )
    previous = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    chat = chat_request(request, conversation(request, previous))
    assert [(m.role, m.text()) for m in chat.messages] == [
        ("system", "Be brief."),
        ("user", "Hi"),
        ("assistant", "Hello"),
        ("user", "What is 2 + 3?"),
    ]
    assert chat.max_completion_tokens == 64 and chat.reasoning_effort == "low"
    assert chat.response_format is not None and chat.response_format.json_schema is not None
    assert chat.response_format.json_schema.json_schema == schema
    assert chat.metadata == {"k": "v"} and chat.cord.overrides() == {"max_steps": 2}


def test_a_chat_field_error_is_named_by_its_responses_field() -> None:
    request = parse_response_request({**BASE, "input": "   "})
    with pytest.raises(InvalidRequestError) as caught:
        chat_request(request, conversation(request))
    assert caught.value.param == "input"


def _row(index: int, status: str, created_at: int) -> dict[str, Any]:
    return {
        "id": f"resp_{index}",
        "owner": "",
        "status": status,
        "background": 1,
        "created_at": created_at,
        "body": "{}",
        "turns": "[]",
        "input_items": "[]",
        "response": json.dumps({"status": status}),
        "runner_pid": None,
    }


def test_retention_by_count_and_age_spares_running_responses(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        store = ResponseStore(tmp_path / "responses.sqlite", max_age_s=3600, max_stored=3)
        now = int(time.time())
        await store.add(_row(0, "completed", now - 7200))  # too old: goes at the next add
        await store.add(_row(1, "in_progress", now - 7200))  # running: never pruned
        for index in range(2, 7):
            await store.add(_row(index, "completed", now + index))
        kept = [r["id"] for r in await store.active()]
        for index in range(7):
            if await store.get(f"resp_{index}", None) is not None and f"resp_{index}" not in kept:
                kept.append(f"resp_{index}")
        await store.close()
        return sorted(kept)

    assert asyncio.run(scenario()) == ["resp_1", "resp_4", "resp_5", "resp_6"]
