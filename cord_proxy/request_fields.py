"""The one definition of every standard Chat Completions request field: what the proxy does
with it.

Each field of OpenAI's Chat Completions API (and the vLLM fields clients send it) is one of:

- ``honoured``: it changes the decode, as its row says;
- ``passed``: sent to every proposer whose API takes it, never to a scoring read;
- ``recorded``: accepted, kept in the dataset record's ``request`` metadata, no other effect;
- ``refused``: a 400 that names it and says why, unless its value asks for nothing (the
  defaults some clients always send, such as ``tools: []`` or ``audio: null``).

The wire model (protocol.py) gives each its type and bounds; the README's table of standard
fields is rendered from this one (``python -m cord_proxy.options_doc --write README.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Treatment = Literal["honoured", "passed", "recorded", "refused"]
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
PROMPT_FIELDS = ("chat_template_kwargs",)  # passed to proposals and scoring reads alike


def asks_nothing(value: Any) -> bool:
    """The values clients send for a feature they do not use: null, false, 0, empty."""
    if value is None or value is False:
        return True
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value == 0
    return bool(value == [] or value == {} or value == "")


def no_tool_choice(value: Any) -> bool:
    """The tool choices that call nothing: none asked, ``none``, or ``auto`` without tools."""
    return asks_nothing(value) or value in ("none", "auto")


def _text_only(value: Any) -> bool:
    return asks_nothing(value) or value == ["text"]


@dataclass(frozen=True)
class StandardField:
    """One request field: how it is treated, the values it takes, and what it does."""

    name: str
    treatment: Treatment
    values: str
    effect: str
    accepts: Callable[[Any], bool] = asks_nothing  # refused fields: the values let through

    def refusal(self) -> str:
        return (
            f"'{self.name}' is not supported by cord-proxy: {self.effect} (accepted: {self.values})"
        )


def field(name: str, treatment: Treatment, values: str, effect: str) -> StandardField:
    """A standard field's row."""
    return StandardField(name, treatment, values, effect)


def refused(
    name: str, values: str, why: str, accepts: Callable[[Any], bool] = asks_nothing
) -> StandardField:
    return StandardField(name, "refused", values, why, accepts)


FIELDS: tuple[StandardField, ...] = (
    field("model", "honoured", "an ensemble's name", "the ensemble that decodes"),
    field("messages", "honoured", "text turns", "the conversation the trace continues"),
    field("stream", "honoured", "`true`, `false`", "steps as they become certain, over SSE"),
    field("stream_options", "honoured", "`include_usage`", "a last chunk with `usage`"),
    field("n", "honoured", "1 to `beam_width`", "finished traces returned, best first"),
    field("temperature", "honoured", "0 to 2", "every proposer's temperature"),
    field("top_p", "honoured", "> 0 to 1", "every proposer's top-p"),
    field("seed", "honoured", "0 to 2^63-1", "a seeded decode gives the same trace every time"),
    field(
        "stop",
        "honoured",
        "up to 16 strings",
        "strings that end the answer; a `</think>` the answer writes ends it too (no thinking "
        "is left to close), except with a `response_format`",
    ),
    field(
        "max_completion_tokens",
        "honoured",
        "at least 1",
        "thinking plus answer budget, shared in their ratio",
    ),
    field(
        "max_tokens",
        "honoured",
        "at least 1",
        "caps the answer (the visible output), not the reasoning (deprecated by OpenAI)",
    ),
    field(
        "reasoning_effort",
        "honoured",
        "`minimal`, `low`, `medium`, `high`, `xhigh`, `max`",
        "the thinking budget: the ensemble's `reasoning_budgets` for that level "
        "(`cord.thinking_budget` wins); `none` is refused: a CoRD trace is reasoning",
    ),
    field(
        "response_format",
        "honoured",
        "`text`, `json_object`, `json_schema` (strict or not)",
        "constrains the final answer, never the reasoning: each answer is validated, the next "
        "answer teacher tries on a mismatch, a 502 names the error when none matches",
    ),
    field(
        "logprobs",
        "honoured",
        "`true`, `false`",
        "the answer tokens' log-probabilities, as the answer teacher read them; refused "
        "when an answer teacher (a hosted one) cannot give them",
    ),
    field("top_logprobs", "honoured", "0 to 20, with `logprobs`", "alternatives per token"),
    *(
        field(name, "passed", values, "to proposers that take it; never to scoring reads")
        for name, values in (
            ("frequency_penalty", "-2 to 2"),
            ("presence_penalty", "-2 to 2"),
            ("logit_bias", "token id -> -100 to 100, up to 300"),
            ("top_k", "-1, or at least 1 (vLLM)"),
            ("min_p", "0 to 1 (vLLM)"),
            ("repetition_penalty", "> 0 to 2 (vLLM)"),
        )
    ),
    field(
        "chat_template_kwargs",
        "passed",
        "an object (vLLM)",
        "the chat template's arguments, for vLLM teachers' proposals and scoring alike",
    ),
    field("metadata", "recorded", "up to 16 string pairs", "kept in the record"),
    field("user", "recorded", "a string", "kept in the record"),
    field("safety_identifier", "recorded", "a string", "kept in the record"),
    field("prompt_cache_key", "recorded", "a string", "kept in the record"),
    field("prompt_cache_retention", "recorded", "`in_memory`, `24h`", "kept in the record"),
    field("prompt_cache_options", "recorded", "an object", "kept in the record"),
    field("service_tier", "recorded", "OpenAI's tiers", "kept in the record"),
    field("store", "recorded", "`true`, `false`", "kept in the record"),
    field("verbosity", "recorded", "`low`, `medium`, `high`", "kept in the record"),
    field("parallel_tool_calls", "recorded", "`true`, `false`", "kept in the record (no tools)"),
    refused("tools", "`[]`", "a trace is reasoning, not tool calls"),
    refused(
        "tool_choice",
        "`none`, `auto` without tools",
        "no tools are called",
        accepts=no_tool_choice,
    ),
    refused("functions", "`[]`", "a trace is reasoning, not function calls"),
    refused("function_call", "`none`, `auto`", "no functions are called", no_tool_choice),
    refused("audio", "null", "text only"),
    refused("modalities", '`["text"]`', "text only", accepts=_text_only),
    refused("prediction", "null", "a predicted output cannot shorten a search"),
    refused("web_search_options", "null", "teachers do not search the web"),
    refused("moderation", "null", "no moderation model runs here"),
)
"""Every standard field, in the README's order."""

BY_NAME: Mapping[str, StandardField] = {f.name: f for f in FIELDS}


def refused_field(
    body: Mapping[str, Any], table: Mapping[str, StandardField] | None = None
) -> StandardField | None:
    """The first refused field (of `table`, default this one) the body sets to a value that
    asks for something."""
    table = BY_NAME if table is None else table
    for name, value in body.items():
        known = table.get(name)
        if known is not None and known.treatment == "refused" and not known.accepts(value):
            return known
    return None


def without_refused(
    body: Mapping[str, Any], table: Mapping[str, StandardField] | None = None
) -> dict[str, Any]:
    """The body less its refused fields (whose values `refused_field` found asking nothing)."""
    table = BY_NAME if table is None else table
    return {k: v for k, v in body.items() if k not in table or table[k].treatment != "refused"}


def names(treatment: Treatment) -> tuple[str, ...]:
    return tuple(f.name for f in FIELDS if f.treatment == treatment)


SAMPLING_FIELDS = tuple(name for name in names("passed") if name not in PROMPT_FIELDS)
"""The passed fields that go with proposals only."""


def table_cell(text: str) -> str:
    """Text made safe for a Markdown table's cell."""
    return text.replace("|", "\\|")


def fields_table(fields: Iterable[StandardField] = FIELDS) -> str:
    """The README's table of standard fields (of this table, or another such as Responses')."""
    rows = [f"| `{f.name}` | {f.treatment} | {f.values} | {table_cell(f.effect)} |" for f in fields]
    header = "| field | treatment | values | what the proxy does |\n|---|---|---|---|"
    return "\n".join([header, *rows])
