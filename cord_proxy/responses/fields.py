"""The one definition of every Responses create field: what the proxy does with it.

Each key of the openai SDK's ``ResponseCreateParams`` is one of the treatments of
request_fields.py: ``honoured`` (it changes the decode), ``recorded`` (accepted and echoed on
the Response object; where the chat request has the same field, also kept in the dataset
record) or ``refused`` (a 400 that names it, unless its value asks for nothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cord_proxy.request_fields import StandardField, Treatment, asks_nothing


def _no_tool_choice(value: Any) -> bool:
    return asks_nothing(value) or value in ("none", "auto")


def _field(name: str, treatment: Treatment, values: str, effect: str) -> StandardField:
    return StandardField(name, treatment, values, effect)


def _refused(name: str, values: str, why: str, accepts: Any = asks_nothing) -> StandardField:
    return StandardField(name, "refused", values, why, accepts)


FIELDS: tuple[StandardField, ...] = (
    _field("model", "honoured", "an ensemble's name", "the ensemble that decodes"),
    _field("input", "honoured", "a string, or message items", "the turn the trace answers"),
    _field("instructions", "honoured", "a string", "a system message before the input"),
    _field(
        "previous_response_id",
        "honoured",
        "a stored response's id",
        "the stored conversation goes on: its input and output come first",
    ),
    _field("stream", "honoured", "`true`, `false`", "the Responses event stream, over SSE"),
    _field("background", "honoured", "`true`, `false`", "answer at once (`queued`), decode on"),
    _field("store", "honoured", "`true`, `false`", "keep the response (retrieve, continue)"),
    _field("max_output_tokens", "honoured", "at least 1", "as `max_completion_tokens`"),
    _field("reasoning", "honoured", "`effort` (`summary` accepted)", "as `reasoning_effort`"),
    _field("text", "honoured", "`format` (`verbosity` recorded)", "as `response_format`"),
    _field("temperature", "honoured", "0 to 2", "every proposer's temperature"),
    _field("top_p", "honoured", "> 0 to 1", "every proposer's top-p"),
    _field("metadata", "recorded", "up to 16 string pairs", "echoed, kept in the record"),
    _field("user", "recorded", "a string", "echoed, kept in the record"),
    _field("safety_identifier", "recorded", "a string", "echoed, kept in the record"),
    _field("prompt_cache_key", "recorded", "a string", "echoed, kept in the record"),
    _field(
        "prompt_cache_retention", "recorded", "`in_memory`, `24h`", "echoed, kept in the record"
    ),
    _field("prompt_cache_options", "recorded", "an object", "kept in the record"),
    _field("service_tier", "recorded", "OpenAI's tiers", "echoed, kept in the record"),
    _field("parallel_tool_calls", "recorded", "`true`, `false`", "echoed (no tools)"),
    _field("truncation", "recorded", "`auto`, `disabled`", "echoed (nothing is truncated)"),
    _field("include", "recorded", "a list of strings", "accepted; the trace is always included"),
    _field("stream_options", "recorded", "an object", "accepted"),
    _refused("tools", "`[]`", "a trace is reasoning, not tool calls"),
    _refused("tool_choice", "`none`, `auto`", "no tools are called", _no_tool_choice),
    _refused("max_tool_calls", "null", "no tools are called"),
    _refused("top_logprobs", "null, 0", "answer log-probabilities are a chat completion field"),
    _refused("prompt", "null", "no stored prompt templates here"),
    _refused("conversation", "null", "no Conversations API here: use previous_response_id"),
    _refused("context_management", "null", "no context compaction here"),
    _refused("image", "null", "text only"),
    _refused("moderation", "null", "no moderation model runs here"),
    _refused("access_programs", "null", "no programs run here"),
    _refused("background_options", "null", "background runs take no options here"),
)
"""Every Responses create field, in the README's order."""

BY_NAME: Mapping[str, StandardField] = {f.name: f for f in FIELDS}


def refused_field(body: Mapping[str, Any]) -> StandardField | None:
    """The first refused field the body sets to a value that asks for something."""
    for name, value in body.items():
        known = BY_NAME.get(name)
        if known is not None and known.treatment == "refused" and not known.accepts(value):
            return known
    return None


def without_refused(body: Mapping[str, Any]) -> dict[str, Any]:
    """The body less its refused fields (whose values `refused_field` found asking nothing)."""
    return {k: v for k, v in body.items() if k not in BY_NAME or BY_NAME[k].treatment != "refused"}
