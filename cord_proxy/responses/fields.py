"""The one definition of every Responses create field: what the proxy does with it.

Each key of the openai SDK's ``ResponseCreateParams`` is one of the treatments of
request_fields.py: ``honoured`` (it changes the decode), ``recorded`` (accepted and echoed on
the Response object; where the chat request has the same field, also kept in the dataset
record) or ``refused`` (a 400 that names it, unless its value asks for nothing).
"""

from __future__ import annotations

from collections.abc import Mapping

from cord_proxy.request_fields import StandardField, field, no_tool_choice, refused

FIELDS: tuple[StandardField, ...] = (
    field("model", "honoured", "an ensemble's name", "the ensemble that decodes"),
    field("input", "honoured", "a string, or message items", "the turn the trace answers"),
    field("instructions", "honoured", "a string", "a system message before the input"),
    field(
        "previous_response_id",
        "honoured",
        "a stored response's id",
        "the stored conversation goes on: its input and output come first",
    ),
    field("stream", "honoured", "`true`, `false`", "the Responses event stream, over SSE"),
    field("background", "honoured", "`true`, `false`", "answer at once (`queued`), decode on"),
    field("store", "honoured", "`true`, `false`", "keep the response (retrieve, continue)"),
    field("max_output_tokens", "honoured", "at least 1", "as `max_completion_tokens`"),
    field("reasoning", "honoured", "`effort` (`summary` accepted)", "as `reasoning_effort`"),
    field("text", "honoured", "`format` (`verbosity` recorded)", "as `response_format`"),
    field("temperature", "honoured", "0 to 2", "every proposer's temperature"),
    field("top_p", "honoured", "> 0 to 1", "every proposer's top-p"),
    field("metadata", "recorded", "up to 16 string pairs", "echoed, kept in the record"),
    field("user", "recorded", "a string", "echoed, kept in the record"),
    field("safety_identifier", "recorded", "a string", "echoed, kept in the record"),
    field("prompt_cache_key", "recorded", "a string", "echoed, kept in the record"),
    field("prompt_cache_retention", "recorded", "`in_memory`, `24h`", "echoed, kept in the record"),
    field("prompt_cache_options", "recorded", "an object", "kept in the record"),
    field("service_tier", "recorded", "OpenAI's tiers", "echoed, kept in the record"),
    field("parallel_tool_calls", "recorded", "`true`, `false`", "echoed (no tools)"),
    field("truncation", "recorded", "`auto`, `disabled`", "echoed (nothing is truncated)"),
    field("include", "recorded", "a list of strings", "accepted; the trace is always included"),
    field("stream_options", "recorded", "an object", "accepted"),
    refused("tools", "`[]`", "a trace is reasoning, not tool calls"),
    refused("tool_choice", "`none`, `auto`", "no tools are called", no_tool_choice),
    refused("max_tool_calls", "null", "no tools are called"),
    refused("top_logprobs", "null, 0", "answer log-probabilities are a chat completion field"),
    refused("prompt", "null", "no stored prompt templates here"),
    refused("conversation", "null", "no Conversations API here: use previous_response_id"),
    refused("context_management", "null", "no context compaction here"),
    refused("image", "null", "text only"),
    refused("moderation", "null", "no moderation model runs here"),
    refused("access_programs", "null", "no programs run here"),
    refused("background_options", "null", "background runs take no options here"),
)
"""Every Responses create field, in the README's order."""

BY_NAME: Mapping[str, StandardField] = {f.name: f for f in FIELDS}
