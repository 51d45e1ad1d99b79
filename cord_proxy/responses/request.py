"""A Responses create request as the openai SDK sends it: the wire model, checked and parsed,
or a 400 that names the field.

Every field is classified in fields.py; this model gives each its type and bounds. Refused
fields are not fields here: a value that asks for nothing is dropped before validation.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cord_proxy.decoding.options import Temperature, TopP
from cord_proxy.protocol import (
    JSON_SCHEMA_NAME,
    CordOptions,
    Metadata,
    RecordedFields,
    content_text,
    parse_body,
)
from cord_proxy.request_fields import ReasoningEffort
from cord_proxy.responses.fields import BY_NAME

MAX_TEXT = 1_000_000
Role = Literal["system", "developer", "user", "assistant"]


class InputText(BaseModel):
    """One text part of an input message (``input_text``; ``output_text`` in assistant turns)."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["input_text", "output_text", "text"]
    text: str = Field(max_length=MAX_TEXT)


class InputMessage(BaseModel):
    """An input item: a message (``type`` may be left out, as the SDK's easy input does)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["message"] = "message"
    role: Role
    content: str | list[InputText] = Field(max_length=MAX_TEXT)
    id: str | None = Field(None, max_length=256)
    status: str | None = Field(None, max_length=64)

    def text(self) -> str:
        return content_text(self.content)


class Reasoning(BaseModel):
    model_config = ConfigDict(extra="forbid")
    effort: ReasoningEffort | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class TextFormat(BaseModel):
    """``text.format``: the Responses spelling of ``response_format`` (flat, not nested)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(None, pattern=JSON_SCHEMA_NAME)
    json_schema: dict[str, Any] | None = Field(None, alias="schema")
    description: str | None = Field(None, max_length=10_000)
    strict: bool | None = None

    def response_format(self) -> dict[str, Any]:
        """The chat request's ``response_format`` of this format."""
        if self.type != "json_schema":
            return {"type": self.type}
        schema = {
            "name": self.name,
            "schema": self.json_schema,
            "description": self.description,
            "strict": self.strict,
        }
        return {
            "type": "json_schema",
            "json_schema": {k: v for k, v in schema.items() if v is not None},
        }


class TextOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ResponseRequest(RecordedFields):
    """A Responses create request; `model` names an ensemble."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=256)
    input: str | list[InputMessage] = Field(max_length=MAX_TEXT)
    instructions: str | None = Field(None, max_length=MAX_TEXT)
    previous_response_id: str | None = Field(None, min_length=1, max_length=128)
    stream: bool | None = False
    background: bool | None = False
    store: bool | None = True
    max_output_tokens: int | None = Field(None, ge=1, le=2_000_000)
    reasoning: Reasoning | None = None
    text: TextOptions | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    metadata: Metadata = None
    parallel_tool_calls: bool | None = None
    truncation: Literal["auto", "disabled"] | None = None
    include: list[Annotated[str, Field(max_length=128)]] | None = Field(None, max_length=32)
    stream_options: dict[str, Any] | None = None
    cord: CordOptions = CordOptions()

    def input_messages(self) -> list[InputMessage]:
        """The input as message items (a string is one user message)."""
        if isinstance(self.input, str):
            return [InputMessage(role="user", content=self.input)]
        return list(self.input)


def parse_response_request(body: dict[str, Any]) -> ResponseRequest:
    return parse_body(body, ResponseRequest, BY_NAME)
