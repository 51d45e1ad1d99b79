"""A teacher's proposal answer, validated at the boundary.

vLLM's chat and completion answers are read through these models. Any other shape (a
``message`` that is a string, ``content`` a number, ``usage`` counts as text, ``logprobs``
of the wrong type, an ``index`` that is not an integer) is a `TeacherProtocolError` that
names the teacher and the field: it counts against that teacher and never reaches the
client as a 500.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from cord_proxy.errors import TeacherProtocolError, field_problems
from cord_proxy.teachers.base import FinishReason, Proposal


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Usage(_Lenient):
    prompt_tokens: StrictInt = Field(0, ge=0)
    completion_tokens: StrictInt = Field(0, ge=0)


class ChatLogprobs(_Lenient):
    content: list[dict[str, Any]] | None = None


class ChatMessage(_Lenient):
    content: StrictStr | None = None


class CompletionLogprobs(_Lenient):
    tokens: list[StrictStr] | None = None


class _Choice(_Lenient):
    index: StrictInt = Field(0, ge=0)
    finish_reason: StrictStr | None = None
    stop_reason: StrictStr | StrictInt | None = None


class ChatChoice(_Choice):
    message: ChatMessage
    logprobs: ChatLogprobs | None = None


class CompletionChoice(_Choice):
    text: StrictStr = ""
    logprobs: CompletionLogprobs | None = None


class ChatAnswer(_Lenient):
    choices: list[ChatChoice] = Field(min_length=1)
    usage: Usage | None = None


class CompletionAnswer(_Lenient):
    choices: list[CompletionChoice] = Field(min_length=1)
    usage: Usage | None = None


def read_proposals(
    data: dict[str, Any], stop: Sequence[str], teacher: str, *, chat: bool
) -> list[Proposal]:
    """The proposals of one answer, in choice order.

    The call's prompt was read once: its tokens go on the first proposal.
    """
    try:
        answer = (ChatAnswer if chat else CompletionAnswer).model_validate(data)
    except ValidationError as error:
        where = field_problems(error)[0].path
        raise TeacherProtocolError(teacher, f"malformed answer at '{where}'") from None
    usage = answer.usage or Usage()
    choices: list[ChatChoice | CompletionChoice] = list(answer.choices)
    choices.sort(key=lambda c: c.index)
    proposals = [_proposal(choice, stop) for choice in choices]
    if usage.prompt_tokens:
        proposals[0] = dataclasses.replace(proposals[0], prompt_tokens=usage.prompt_tokens)
    return proposals


def _proposal(choice: ChatChoice | CompletionChoice, stop: Sequence[str]) -> Proposal:
    if isinstance(choice, ChatChoice):
        text = choice.message.content or ""
        tokens = len(choice.logprobs.content or []) if choice.logprobs else 0
    else:
        text = choice.text
        tokens = len(choice.logprobs.tokens or []) if choice.logprobs else 0
    reason, stop_string = _finish(choice, stop)
    return Proposal(text=text, finish_reason=reason, tokens=tokens, stop_string=stop_string)


def _finish(choice: _Choice, stop: Sequence[str]) -> tuple[FinishReason, str | None]:
    if choice.finish_reason == "length":
        return "length", None
    if isinstance(choice.stop_reason, str) and choice.stop_reason in stop:
        return "stop", choice.stop_reason
    return "closed", None
