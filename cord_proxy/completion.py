"""Turn a decode's result into an OpenAI chat completion, whole or as stream chunks.

When the request asked for ``logprobs``, a choice's ``logprobs`` holds its answer's tokens in
OpenAI's ``ChatCompletionTokenLogprob`` shape (``bytes``: the token's UTF-8 bytes); streamed,
the answer is cut along token boundaries, and each content chunk carries exactly its tokens.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

from cord_proxy.data.provenance import decode_provenance
from cord_proxy.decoding.trace import (
    AnswerLogprob,
    DecodeResult,
    FinishedTrace,
    StepRecord,
    TeacherUsage,
    TopLogprob,
)
from cord_proxy.teachers.base import THINK_CLOSE, THINK_OPEN

ANSWER_CHUNK_CHARS = 32


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def inline_content(reasoning: str, answer: str) -> str:
    """The assistant turn with the trace inline (``reasoning_format: inline``)."""
    return f"{THINK_OPEN}{reasoning}\n{THINK_CLOSE}\n\n{answer}"


def message_of(
    trace: FinishedTrace, reasoning_format: Literal["field", "inline"]
) -> dict[str, Any]:
    if reasoning_format == "inline":
        return {"role": "assistant", "content": inline_content(trace.reasoning, trace.answer)}
    return {
        "role": "assistant",
        "content": trace.answer,
        "reasoning_content": trace.reasoning,
        "reasoning": trace.reasoning,
    }


def usage_counts(
    prompt_tokens: int,
    reasoning_tokens: int,
    answer_tokens: int,
    *,
    cost: float | None = None,
    teacher_tokens: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """A chat completion's usage; reasoning tokens are part of completion tokens. `cost`
    (USD, OpenRouter's ``usage.cost``) and `teacher_tokens` are the whole decode's, when given."""
    completion = reasoning_tokens + answer_tokens
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
        "completion_tokens_details": {"reasoning_tokens": reasoning_tokens},
    }
    if cost is not None:
        usage["cost"] = cost
    if teacher_tokens is not None:
        usage["teacher_tokens"] = dict(teacher_tokens)
    return usage


def decode_cost(teachers: Sequence[TeacherUsage]) -> float:
    """The whole decode's cost in USD: the sum of its teachers' (``cord.teachers[].cost_usd``)."""
    return sum(u.cost_usd for u in teachers)


def teacher_tokens(teachers: Sequence[TeacherUsage]) -> dict[str, int]:
    """Every token the decode's teachers processed, summed over them (``usage.teacher_tokens``):
    their proposals' and answers' prompt and completion tokens, and their scoring reads'."""
    return {
        "prompt": sum(u.prompt_tokens for u in teachers),
        "completion": sum(u.completion_tokens for u in teachers),
        "scoring": sum(u.score_tokens for u in teachers),
    }


def usage_of(result: DecodeResult, traces: list[FinishedTrace]) -> dict[str, Any]:
    """Usage of the returned choices, with the cost and teacher tokens of the whole decode."""
    return usage_counts(
        result.prompt_tokens,
        sum(t.reasoning_tokens for t in traces),
        sum(t.answer_tokens for t in traces),
        cost=decode_cost(result.teachers),
        teacher_tokens=teacher_tokens(result.teachers),
    )


def provenance(result: DecodeResult, ensemble: str, n: int) -> dict[str, Any]:
    """The `cord` extension object: who wrote each step and how it scored."""
    return {"ensemble": ensemble, **decode_provenance(result, choices=n)}


def completion_choice(
    index: int,
    message: dict[str, Any],
    finish_reason: str,
    logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "index": index,
        "message": message,
        "logprobs": logprobs,
        "finish_reason": finish_reason,
    }


def logprobs_of(tokens: Sequence[AnswerLogprob] | None) -> dict[str, Any] | None:
    """A choice's ``logprobs``: these answer tokens' values; null when none were asked for."""
    if tokens is None:
        return None
    return {"content": [token_logprob(token) for token in tokens], "refusal": None}


def token_logprob(token: AnswerLogprob) -> dict[str, Any]:
    """One token as OpenAI's ``ChatCompletionTokenLogprob``."""
    return {**_top_logprob(token), "top_logprobs": [_top_logprob(top) for top in token.top]}


def _top_logprob(token: AnswerLogprob | TopLogprob) -> dict[str, Any]:
    return {"token": token.token, "logprob": token.logprob, "bytes": list(token.token.encode())}


def answer_pieces(
    answer: str, tokens: Sequence[AnswerLogprob], size: int = ANSWER_CHUNK_CHARS
) -> list[tuple[str, list[AnswerLogprob]]]:
    """`answer` cut along its tokens into pieces of about `size` characters, each with the
    tokens that write it (a token that reaches past the answer, as ``" 42"`` past ``"42"``,
    writes only its part inside). Tokens that do not spell the answer: one piece with all."""
    spans = _token_parts(answer, tokens)
    if spans is None:
        return [(answer, list(tokens))]
    pieces: list[tuple[str, list[AnswerLogprob]]] = []
    text = ""
    group: list[AnswerLogprob] = []
    for token, part in spans:
        text, group = text + part, [*group, token]
        if len(text) >= size:
            pieces.append((text, group))
            text, group = "", []
    if group:
        pieces.append((text, group))
    return pieces


def _token_parts(
    answer: str, tokens: Sequence[AnswerLogprob]
) -> list[tuple[AnswerLogprob, str]] | None:
    """Each token with the part of `answer` it writes; None when they do not spell it."""
    start = "".join(token.token for token in tokens).find(answer)
    if start < 0:
        return None
    parts, offset = [], -start
    for token in tokens:
        after = offset + len(token.token)
        parts.append((token, answer[max(offset, 0) : max(after, 0)]))
        offset = after
    return parts


def chat_completion(
    request_id: str,
    model: str | None,
    created: int,
    choices: list[dict[str, Any]],
    usage: dict[str, Any],
    cord: dict[str, Any],
) -> dict[str, Any]:
    """A ``chat.completion`` object with the `cord` extension."""
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": choices,
        "usage": usage,
        "cord": cord,
    }


def completion_body(
    result: DecodeResult,
    *,
    ensemble: str,
    n: int,
    reasoning_format: Literal["field", "inline"],
    request_id: str,
) -> dict[str, Any]:
    traces = result.traces[:n]
    return chat_completion(
        request_id,
        ensemble,
        int(time.time()),
        [
            completion_choice(
                i,
                message_of(trace, reasoning_format),
                trace.answer_finish_reason,
                logprobs_of(trace.answer_logprobs),
            )
            for i, trace in enumerate(traces)
        ],
        usage_of(result, traces),
        provenance(result, ensemble, n),
    )


class ChunkWriter:
    """Builds the ``chat.completion.chunk`` objects of one streamed completion."""

    def __init__(self, request_id: str, ensemble: str):
        self.request_id = request_id
        self.ensemble = ensemble
        self.created = int(time.time())

    def chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {
            "id": self.request_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.ensemble,
            "system_fingerprint": None,
            "choices": choices,
            **extra,
        }

    def delta(
        self, index: int, logprobs: dict[str, Any] | None = None, **delta: Any
    ) -> dict[str, Any]:
        return self.chunk(
            [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": None}]
        )

    def role(self, n: int) -> dict[str, Any]:
        return self.chunk(
            [
                {
                    "index": i,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": None,
                    "finish_reason": None,
                }
                for i in range(n)
            ]
        )

    def reasoning(self, index: int, text: str, inline: bool) -> dict[str, Any]:
        if inline:
            return self.delta(index, content=text)
        return self.delta(index, reasoning_content=text, reasoning=text)

    def steps(
        self, index: int, steps: list[StepRecord], first: bool, inline: bool
    ) -> Iterator[dict[str, Any]]:
        for position, step in enumerate(steps):
            text = step.text.lstrip() if first and position == 0 else step.text
            if inline and first and position == 0:
                text = THINK_OPEN + text
            if text:
                yield self.reasoning(index, text, inline)

    def answer(self, index: int, trace: FinishedTrace, inline: bool) -> Iterator[dict[str, Any]]:
        """The answer's content chunks (after the thinking's close when `inline`); with
        logprobs, cut along its tokens, each chunk with the tokens of its text."""
        if trace.answer_logprobs is not None:
            if inline:
                yield self.delta(index, content=f"\n{THINK_CLOSE}\n\n")
            for text, tokens in answer_pieces(trace.answer, trace.answer_logprobs):
                yield self.delta(index, logprobs_of(tokens), content=text)
            return
        text = f"\n{THINK_CLOSE}\n\n{trace.answer}" if inline else trace.answer
        for start in range(0, len(text), ANSWER_CHUNK_CHARS):
            yield self.delta(index, content=text[start : start + ANSWER_CHUNK_CHARS])

    def finish(self, traces: list[FinishedTrace], cord: dict[str, Any]) -> dict[str, Any]:
        return self.chunk(
            [
                {"index": i, "delta": {}, "logprobs": None, "finish_reason": t.answer_finish_reason}
                for i, t in enumerate(traces)
            ],
            cord=cord,
        )

    def usage(self, usage: dict[str, Any]) -> dict[str, Any]:
        return self.chunk([], usage=usage)
