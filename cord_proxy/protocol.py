"""OpenAI chat-completion wire models, and the `cord` request extension."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

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
from cord_proxy.errors import InvalidRequestError, UnsupportedFieldError, field_problems
from cord_proxy.request_fields import (
    SAMPLING_FIELDS,
    ReasoningEffort,
    StandardField,
    names,
    refused_field,
    without_refused,
)
from cord_proxy.teachers.base import CallExtras


class _HasText(Protocol):
    text: str


def content_text(content: str | Sequence[_HasText]) -> str:
    """A message's content as one string: its text parts joined."""
    return content if isinstance(content, str) else "".join(part.text for part in content)


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
        return content_text(self.content)


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


JSON_SCHEMA_NAME = r"^[a-zA-Z0-9_-]{1,64}$"
MAX_METADATA_PAIRS = 16


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=JSON_SCHEMA_NAME)
    description: str | None = Field(None, max_length=10_000)
    json_schema: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    """OpenAI's ``response_format``: free text, any JSON object, or JSON matching a schema."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_with_its_type(self) -> ResponseFormat:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("'json_schema' is given with, and only with, type 'json_schema'")
        return self

    def constraint(self) -> dict[str, Any] | None:
        """The format as the answer calls take it; None for free text."""
        if self.type == "text":
            return None
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _metadata_pairs(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return value
    if len(value) > MAX_METADATA_PAIRS:
        raise ValueError(f"takes at most {MAX_METADATA_PAIRS} pairs")
    if any(len(key) > 64 or len(item) > 512 for key, item in value.items()):
        raise ValueError("keys take at most 64 characters and values 512")
    return value


Metadata = Annotated[dict[str, str] | None, AfterValidator(_metadata_pairs)]
"""OpenAI's ``metadata``: up to 16 string pairs, keys of 64 characters, values of 512."""
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]
Bias = Annotated[int, Field(ge=-100, le=100)]


class RecordedFields(BaseModel):
    """Fields that chat and Responses requests alike accept and only record (request_fields.py)."""

    user: str | None = Field(None, max_length=256)
    safety_identifier: str | None = Field(None, max_length=256)
    prompt_cache_key: str | None = Field(None, max_length=256)
    prompt_cache_retention: Literal["in_memory", "24h", "in-memory"] | None = None
    prompt_cache_options: dict[str, Any] | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority", "fast"] | None = None


class ChatCompletionRequest(RecordedFields):
    """A standard chat completion request; `model` names an ensemble.

    Every field is classified in request_fields.py; this model gives each its type and bounds.
    Refused fields are not fields here: a value that asks for nothing is dropped before
    validation, any other gets the refusal (api/parsing.py).
    """

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessage] = Field(min_length=1, max_length=1024)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    seed: Seed | None = None
    max_tokens: int | None = Field(None, ge=1, le=2_000_000)
    max_completion_tokens: int | None = Field(None, ge=1, le=2_000_000)
    stop: str | list[str] | None = None
    n: ChoiceCount | None = None
    reasoning_effort: ReasoningEffort | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    logit_bias: dict[str, Bias] | None = Field(None, max_length=300)
    top_k: int | None = Field(None, ge=-1, le=1_000_000)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(None, gt=0.0, le=2.0)
    chat_template_kwargs: dict[str, Any] | None = None
    metadata: Metadata = None
    store: bool | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    parallel_tool_calls: bool | None = None
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

    @field_validator("logit_bias")
    @classmethod
    def _token_ids(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        if value is not None and not all(key.isdigit() for key in value):
            raise ValueError("keys are token ids (digits)")
        return value

    @model_validator(mode="after")
    def _top_logprobs_with_logprobs(self) -> ChatCompletionRequest:
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        return self

    def stop_strings(self) -> tuple[str, ...] | None:
        if self.stop is None:
            return None
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def completion_limit(self) -> int | None:
        """``max_completion_tokens``: thinking and answer together, as OpenAI counts it."""
        return self.max_completion_tokens

    def answer_limit(self) -> int | None:
        """``max_tokens``: the visible output, the answer. OpenAI deprecated it for
        ``max_completion_tokens``, which reasoning models take; clients that send it by
        default (distilabel: 128) mean the text they keep, not the reasoning."""
        return self.max_tokens

    def overrides(self) -> dict[str, Any]:
        """The decoding options this request sets, in ``cord`` and in standard fields."""
        options = request_fields()
        given = {field: getattr(self, field) for field in options}
        given["stop"] = self.stop_strings()
        standard = {options[f]: v for f, v in given.items() if v is not None}
        return {**self.cord.overrides(), **standard}

    def call_extras(self) -> CallExtras:
        """The fields that go with proposal calls: sampling for all, the rest for answers."""
        sampling = {name: value for name in SAMPLING_FIELDS if (value := getattr(self, name))}
        logprobs = (self.top_logprobs or 0) if self.logprobs else None
        answer_format = self.response_format.constraint() if self.response_format else None
        return CallExtras(sampling, answer_format, logprobs)

    def recorded(self) -> dict[str, Any]:
        """The recorded fields the request set, as given."""
        return {
            name: value for name in names("recorded") if (value := getattr(self, name)) is not None
        }


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


Parsed = TypeVar("Parsed", bound=BaseModel)


def parse_body(
    body: dict[str, Any], model: type[Parsed], fields: Mapping[str, StandardField]
) -> Parsed:
    """A request's JSON object checked and parsed as `model`, or a 400 that names the field.

    Text that is not Unicode, a field `fields` refuses and a value the model rejects each get
    their own message, with ``param`` set to the field's path.
    """
    bad_text = unencodable_text(body)
    if bad_text is not None:
        raise InvalidRequestError(
            f"Invalid value for '{bad_text}': a string holds a lone UTF-16 surrogate, "
            "which is not Unicode text",
            param=bad_text,
        )
    refused = refused_field(body, fields)
    if refused is not None:
        raise UnsupportedFieldError(refused.refusal(), param=refused.name)
    try:
        return model.model_validate(without_refused(body, fields))
    except ValidationError as error:
        raise validation_error(error) from None


def validation_error(error: ValidationError) -> InvalidRequestError:
    """The 400 of a body the wire model rejects, naming its first bad field as OpenAI does."""
    first = field_problems(error)[0]
    param = param_name(first.location)
    if first.kind == "extra_forbidden":
        message = f"Unrecognized request argument supplied: {param}"
    elif param is not None:
        message = f"Invalid value for '{param}': {first.message}"
    else:  # the request as a whole (a check across fields)
        message = f"Invalid request: {first.message}"
    return InvalidRequestError(message, param=param)
