"""A teacher's proposal answer, validated at the boundary.

vLLM's chat and completion answers are read through these models. Any other shape (a
``message`` that is a string, ``content`` a number, ``usage`` counts as text, ``logprobs``
of the wrong type, an ``index`` that is not an integer) is a `TeacherProtocolError` that
names the teacher and the field: it counts against that teacher and never reaches the
client as a 500.

When a call asked for the generated tokens' log-probabilities (`read_proposals`'s
`logprobs`), they are read strictly: every token with a finite value, and its alternatives
where asked. vLLM lists the tokens of a matched stop string and the end-of-sequence token
with the others; the proposal keeps those that write its text.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from cord_proxy.errors import TeacherProtocolError, field_problems
from cord_proxy.teachers.base import FinishReason, Proposal, TokenLogprob

Logprob = Annotated[StrictFloat, Field(allow_inf_nan=False)]


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


# --- answers whose calls asked for log-probabilities: read strictly ------------------------


class ChatTopLogprob(_Lenient):
    token: StrictStr
    logprob: Logprob
    bytes: list[StrictInt] | None = None

    @property
    def length(self) -> int:
        """The token's length in UTF-8 bytes, as the server counted it where it said."""
        return len(self.bytes) if self.bytes is not None else len(self.token.encode())


class ChatTokenLogprob(ChatTopLogprob):
    top_logprobs: list[ChatTopLogprob] = Field(default_factory=list)


class ChatTokenLogprobs(_Lenient):
    content: list[ChatTokenLogprob]


class CompletionTokenLogprobs(_Lenient):
    tokens: list[StrictStr]
    token_logprobs: list[Logprob]
    top_logprobs: list[dict[str, Logprob]] | None = None
    text_offset: list[StrictInt] | None = None


class ChatChoiceWithLogprobs(ChatChoice):
    logprobs: ChatTokenLogprobs  # type: ignore[assignment]


class CompletionChoiceWithLogprobs(CompletionChoice):
    logprobs: CompletionTokenLogprobs  # type: ignore[assignment]


class ChatAnswerWithLogprobs(ChatAnswer):
    choices: list[ChatChoiceWithLogprobs] = Field(min_length=1)  # type: ignore[assignment]


class CompletionAnswerWithLogprobs(CompletionAnswer):
    choices: list[CompletionChoiceWithLogprobs] = Field(min_length=1)  # type: ignore[assignment]


AnswerModel = (
    type[ChatAnswer]
    | type[CompletionAnswer]
    | type[ChatAnswerWithLogprobs]
    | type[CompletionAnswerWithLogprobs]
)


def read_proposals(
    data: dict[str, Any],
    stop: Sequence[str],
    teacher: str,
    *,
    chat: bool,
    logprobs: int | None = None,
) -> list[Proposal]:
    """The proposals of one answer, in choice order.

    The call's prompt was read once: its tokens go on the first proposal. With `logprobs`
    (the call asked for them: 0, each token's own; k, and its k best alternatives), every
    proposal carries its tokens' values, and an answer without them is malformed.
    """
    model = _answer_model(chat=chat, logprobs=logprobs is not None)
    try:
        answer = model.model_validate(data)
    except ValidationError as error:
        where = field_problems(error)[0].path
        raise TeacherProtocolError(teacher, f"malformed answer at '{where}'") from None
    usage = answer.usage or Usage()
    choices: list[ChatChoice | CompletionChoice] = list(answer.choices)
    choices.sort(key=lambda c: c.index)
    proposals = [_proposal(choice, stop, teacher, logprobs) for choice in choices]
    if usage.prompt_tokens:
        proposals[0] = dataclasses.replace(proposals[0], prompt_tokens=usage.prompt_tokens)
    return proposals


def _answer_model(*, chat: bool, logprobs: bool) -> AnswerModel:
    if logprobs:
        return ChatAnswerWithLogprobs if chat else CompletionAnswerWithLogprobs
    return ChatAnswer if chat else CompletionAnswer


def _proposal(
    choice: ChatChoice | CompletionChoice, stop: Sequence[str], teacher: str, top: int | None
) -> Proposal:
    if isinstance(choice, ChatChoice):
        text = choice.message.content or ""
        tokens = len(choice.logprobs.content or []) if choice.logprobs else 0
    else:
        text = choice.text
        tokens = len(choice.logprobs.tokens or []) if choice.logprobs else 0
    reason, stop_string = _finish(choice, stop)
    values = None if top is None else _token_logprobs(choice, text, teacher, top)
    return Proposal(
        text=text, finish_reason=reason, tokens=tokens, stop_string=stop_string, logprobs=values
    )


def _token_logprobs(
    choice: ChatChoice | CompletionChoice, text: str, teacher: str, top: int
) -> tuple[TokenLogprob, ...]:
    """The values of the tokens that write `text` (`_within_text`), each with its `top` best
    alternatives, best first."""
    if isinstance(choice, ChatChoiceWithLogprobs):
        return _chat_logprobs(choice.logprobs, text, top)
    if isinstance(choice, CompletionChoiceWithLogprobs):
        return _completion_logprobs(choice.logprobs, text, teacher, top)
    raise AssertionError("read with the model that asks for log-probabilities")


def _chat_logprobs(values: ChatTokenLogprobs, text: str, top: int) -> tuple[TokenLogprob, ...]:
    starts = _starts([entry.length for entry in values.content])
    kept = _within_text(starts, len(text.encode()))
    return tuple(
        TokenLogprob(
            entry.token,
            entry.logprob,
            _best([(t.token, t.logprob) for t in entry.top_logprobs], top),
        )
        for entry in values.content[:kept]
    )


def _completion_logprobs(
    values: CompletionTokenLogprobs, text: str, teacher: str, top: int
) -> tuple[TokenLogprob, ...]:
    count = len(values.tokens)
    alternatives = values.top_logprobs
    if top > 0 and alternatives is None:
        raise TeacherProtocolError(teacher, "malformed answer: no top_logprobs were given")
    lists = [values.token_logprobs, alternatives, values.text_offset]
    if any(given is not None and len(given) != count for given in lists):
        raise TeacherProtocolError(teacher, "malformed answer: logprobs of unequal lengths")
    starts = values.text_offset or _starts([len(token) for token in values.tokens])
    kept = _within_text(starts, len(text))
    return tuple(
        TokenLogprob(
            values.tokens[i],
            values.token_logprobs[i],
            _best(list(alternatives[i].items()), top) if alternatives else (),
        )
        for i in range(kept)
    )


def _starts(lengths: Sequence[int]) -> list[int]:
    """Where each token starts, from the tokens' lengths."""
    starts, at = [], 0
    for length in lengths:
        starts.append(at)
        at += length
    return starts


def _within_text(starts: Sequence[int], length: int) -> int:
    """How many of the tokens start inside the text: the ones after it (a stop string's,
    the end of sequence) wrote nothing the proposal keeps."""
    return next((i for i, start in enumerate(starts) if start >= length), len(starts))


def _best(alternatives: list[tuple[str, float]], top: int) -> tuple[tuple[str, float], ...]:
    """The `top` most likely alternatives, best first (vLLM's completions list the sampled
    token beside its k best)."""
    if top <= 0:
        return ()
    return tuple(sorted(alternatives, key=lambda item: -item[1])[:top])


def _finish(choice: _Choice, stop: Sequence[str]) -> tuple[FinishReason, str | None]:
    if choice.finish_reason == "length":
        return "length", None
    if isinstance(choice.stop_reason, str) and choice.stop_reason in stop:
        return "stop", choice.stop_reason
    return "closed", None
