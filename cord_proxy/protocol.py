"""OpenAI chat-completion wire models, and the `cord` request extension."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from cord_proxy.decoding.job import reference_problem
from cord_proxy.decoding.options import (
    CORD,
    ChoiceCount,
    Seed,
    Temperature,
    TopP,
    options_set_by,
    request_fields,
    unset_field,
)

UNSUPPORTED_FIELDS = (
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "parallel_tool_calls",
    "response_format",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "presence_penalty",
    "frequency_penalty",
    "audio",
    "modalities",
    "prediction",
    "web_search_options",
    "reasoning_effort",
    "service_tier",
    "store",
)
"""Standard fields the proxy cannot honour: a request that sets one is refused, by name."""


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str = Field(max_length=1_000_000)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] = Field(max_length=1_000_000)
    name: str | None = Field(None, max_length=256)

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class CordFields(BaseModel):
    """The ``cord`` fields that are not decoding options: they choose what and with whom."""

    model_config = ConfigDict(extra="forbid")

    reference_answer: str | None = Field(
        None,
        max_length=100_000,
        description="known answer: candidates are scored by the predictive probability of "
        "this answer (docs/method.md, Eq. 3). Without it, by the other teachers' likelihood of "
        "the step",
    )
    teachers: list[str] | None = Field(
        None, min_length=1, max_length=64, description="the proposers: configured teachers"
    )
    scorers: list[str] | None = Field(
        None, min_length=1, max_length=64, description="the scorers: configured teachers"
    )
    reasoning_format: Literal["field", "inline"] = Field(
        "field",
        description="`field` (`reasoning_content`) or `inline` (`<think>...</think>` in `content`)",
    )

    @field_validator("reference_answer")
    @classmethod
    def _non_blank_reference(cls, value: str | None) -> str | None:
        problem = reference_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    def overrides(self) -> dict[str, Any]:
        """The decoding options this object sets."""
        return {
            name: value
            for name, _ in options_set_by(CORD)
            if (value := getattr(self, name, None)) is not None
        }


def _cord_model() -> type[CordFields]:
    """The request's ``cord`` object: `CordFields` plus every option a request may set there."""
    fields: dict[str, Any] = {name: unset_field(info) for name, info in options_set_by(CORD)}
    return create_model(
        "CordOptions",
        __base__=CordFields,
        __doc__='The CoRD controls of one request (``extra_body={"cord": {...}}``).',
        **fields,
    )


if TYPE_CHECKING:
    CordOptions = CordFields
else:
    CordOptions = _cord_model()


class ChatCompletionRequest(BaseModel):
    """A standard chat completion request; `model` names an ensemble."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessage] = Field(min_length=1, max_length=1024)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    seed: Seed | None = None
    max_tokens: int | None = Field(None, ge=1, le=2_000_000)
    max_completion_tokens: int | None = Field(None, ge=1, le=2_000_000)
    stop: str | list[str] | None = None
    n: ChoiceCount | None = None
    user: str | None = Field(None, max_length=256)
    metadata: dict[str, str] | None = None
    cord: CordOptions = CordOptions()

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > 16 or any(not s for s in stops):
            raise ValueError("stop takes up to 16 non-empty strings")
        return value

    @field_validator("messages")
    @classmethod
    def _has_user_turn(cls, value: list[ChatMessage]) -> list[ChatMessage]:
        if not any(m.role == "user" and m.text().strip() for m in value):
            raise ValueError("messages need at least one non-empty user message")
        return value

    def stop_strings(self) -> tuple[str, ...] | None:
        if self.stop is None:
            return None
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def completion_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def overrides(self) -> dict[str, Any]:
        """The decoding options this request sets, in ``cord`` and in standard fields."""
        options = request_fields()
        given = {field: getattr(self, field) for field in options}
        given["stop"] = self.stop_strings()
        standard = {options[f]: v for f, v in given.items() if v is not None}
        return {**self.cord.overrides(), **standard}


def asks_nothing(value: Any) -> bool:
    """True for the values some clients always send for fields they do not use."""
    if value is None or value is False:
        return True
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value == 0
    return bool(value == [] or value == {})


def unsupported_fields(body: dict[str, Any]) -> list[str]:
    """Fields in the body the proxy cannot honour, ignoring values that ask for nothing."""
    return [name for name in UNSUPPORTED_FIELDS if name in body and not asks_nothing(body[name])]


PARAM_LIMIT = 200


def param_name(location: Iterable[object]) -> str | None:
    """A field's path as the `param` of an error (``messages.0.content``), kept short."""
    name = ".".join(str(part) for part in location)
    if len(name) > PARAM_LIMIT:
        name = name[: PARAM_LIMIT - 1] + "…"
    return name or None


def unencodable_text(body: Any) -> str | None:
    """The path of the first string (value or key, at any depth) that is not Unicode text.

    JSON escapes can spell a lone UTF-16 surrogate (``"\\ud800"``), which no encoder of
    UTF-8 accepts. Walked without recursion, since the body may nest deeply.
    """
    pending: list[tuple[Any, tuple[object, ...]]] = [(body, ())]
    while pending:
        value, path = pending.pop()
        if isinstance(value, str):
            if not _encodable(value):
                return param_name(path) or "(body)"
        elif isinstance(value, dict):
            for key, item in value.items():
                if not _encodable(str(key)):
                    return param_name(path) or "(body)"
                pending.append((item, (*path, key)))
        elif isinstance(value, list):
            pending.extend((item, (*path, index)) for index, item in enumerate(value))
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
