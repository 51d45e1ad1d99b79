"""Every Chat Completions field the installed openai SDK knows is classified, and the table
agrees with the wire model (request_fields.py, protocol.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from openai.types.chat import completion_create_params

from cord_proxy.api.parsing import parse_chat_request
from cord_proxy.errors import InvalidRequestError, UnsupportedFieldError
from cord_proxy.protocol import ChatCompletionRequest
from cord_proxy.request_fields import BY_NAME, FIELDS, SAMPLING_FIELDS, fields_table, names
from cord_proxy.responses.fields import FIELDS as RESPONSES_FIELDS

VLLM_FIELDS = {"top_k", "min_p", "repetition_penalty", "chat_template_kwargs"}
BODY = {"model": "cord", "messages": [{"role": "user", "content": "What is 2 + 3?"}]}


def sdk_keys() -> set[str]:
    """The keys of the SDK's `CompletionCreateParams`, streaming and not."""
    streaming = completion_create_params.CompletionCreateParamsStreaming.__annotations__
    plain = completion_create_params.CompletionCreateParamsNonStreaming.__annotations__
    base = completion_create_params.CompletionCreateParamsBase.__annotations__
    return set(base) | set(streaming) | set(plain)


def unclassified(keys: Iterable[str], classified: Iterable[str]) -> list[str]:
    return sorted(set(keys) - set(classified))


def test_every_sdk_field_is_classified() -> None:
    keys = sdk_keys()
    assert {"messages", "model", "stream", "reasoning_effort", "response_format"} <= keys
    assert unclassified(keys, BY_NAME) == []


def test_a_field_dropped_from_the_table_is_found() -> None:
    for dropped in ("frequency_penalty", "tools", "metadata", "reasoning_effort"):
        table = [f.name for f in FIELDS if f.name != dropped]
        assert unclassified(sdk_keys(), table) == [dropped]


def test_the_table_and_the_wire_model_agree() -> None:
    model_fields = set(ChatCompletionRequest.model_fields) - {"cord"}
    kept = {f.name for f in FIELDS if f.treatment != "refused"}
    assert kept == model_fields
    assert sdk_keys() | VLLM_FIELDS == set(BY_NAME)
    assert set(SAMPLING_FIELDS) <= set(names("passed"))


def test_the_readme_holds_the_rendered_table() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert fields_table() in readme
    assert fields_table(RESPONSES_FIELDS) in readme


def parse(**fields: Any) -> ChatCompletionRequest:
    return parse_chat_request({**BODY, **fields})


@pytest.mark.parametrize(
    "fields",
    [
        {"logprobs": False, "top_logprobs": None},
        {"frequency_penalty": 0.0, "presence_penalty": 0.0, "max_tokens": 128},
        {"logit_bias": {}},
        {"tools": [], "tool_choice": "none", "parallel_tool_calls": True},
        {"functions": None, "function_call": "none"},
        {"modalities": ["text"], "audio": None, "prediction": None},
        {"response_format": {"type": "text"}, "n": 1, "store": False},
        {"web_search_options": None, "moderation": None},
    ],
)
def test_defaults_and_no_op_values_are_accepted(fields: dict[str, Any]) -> None:
    request = parse(**fields)
    assert request.call_extras().empty


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("tools", [{"type": "function", "function": {"name": "f"}}]),
        ("tool_choice", "required"),
        ("functions", [{"name": "f"}]),
        ("function_call", {"name": "f"}),
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("modalities", ["text", "audio"]),
        ("prediction", {"type": "content", "content": "x"}),
        ("web_search_options", {"search_context_size": "low"}),
        ("moderation", {"model": "omni-moderation-latest"}),
    ],
)
def test_a_refused_field_is_named_with_its_reason(name: str, value: Any) -> None:
    with pytest.raises(UnsupportedFieldError) as refused:
        parse(**{name: value})
    assert refused.value.param == name
    assert name in refused.value.message and BY_NAME[name].effect in refused.value.message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("frequency_penalty", 2.5),
        ("logit_bias", {"x": 1}),
        ("logit_bias", {"5": 101}),
        ("top_logprobs", 21),
        ("reasoning_effort", "extreme"),
        ("metadata", {f"k{i}": "v" for i in range(17)}),
        ("response_format", {"type": "json_schema"}),
        ("response_format", {"type": "json_schema", "json_schema": {"name": "a b"}}),
        ("repetition_penalty", 0),
        ("service_tier", "gold"),
    ],
)
def test_a_value_out_of_bounds_is_a_400_naming_the_field(name: str, value: Any) -> None:
    with pytest.raises(InvalidRequestError) as bad:
        parse(**{name: value})
    assert str(bad.value.param).startswith(name)


def test_top_logprobs_needs_logprobs() -> None:
    with pytest.raises(InvalidRequestError):
        parse(top_logprobs=2)


def test_fields_become_call_extras_and_records() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    request = parse(
        frequency_penalty=0.5,
        top_k=20,
        logit_bias={"42": -5},
        logprobs=True,
        top_logprobs=3,
        response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema}},
        metadata={"run": "a"},
        user="u1",
        service_tier="flex",
    )
    extras = request.call_extras()
    assert extras.sampling == {"frequency_penalty": 0.5, "top_k": 20, "logit_bias": {"42": -5}}
    assert extras.logprobs == 3
    assert extras.response_format == {
        "type": "json_schema",
        "json_schema": {"name": "n", "schema": schema},
    }
    assert extras.for_steps().response_format is None and extras.for_steps().logprobs is None
    assert request.recorded() == {"metadata": {"run": "a"}, "user": "u1", "service_tier": "flex"}
    assert parse(logprobs=True).call_extras().logprobs == 0
