"""Turn a decode's result into an OpenAI chat completion, whole or as stream chunks."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any, Literal

from cord_proxy.data.provenance import decode_provenance
from cord_proxy.decoding.trace import DecodeResult, FinishedTrace, StepRecord
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


def usage_counts(prompt_tokens: int, reasoning_tokens: int, answer_tokens: int) -> dict[str, Any]:
    """A chat completion's usage; reasoning tokens are part of completion tokens."""
    completion = reasoning_tokens + answer_tokens
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
        "completion_tokens_details": {"reasoning_tokens": reasoning_tokens},
    }


def usage_of(result: DecodeResult, traces: list[FinishedTrace]) -> dict[str, Any]:
    """Usage of the returned choices."""
    return usage_counts(
        result.prompt_tokens,
        sum(t.reasoning_tokens for t in traces),
        sum(t.answer_tokens for t in traces),
    )


def provenance(result: DecodeResult, ensemble: str, n: int) -> dict[str, Any]:
    """The `cord` extension object: who wrote each step and how it scored."""
    return {"ensemble": ensemble, **decode_provenance(result, choices=n)}


def completion_choice(index: int, message: dict[str, Any], finish_reason: str) -> dict[str, Any]:
    return {"index": index, "message": message, "logprobs": None, "finish_reason": finish_reason}


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
            completion_choice(i, message_of(trace, reasoning_format), trace.answer_finish_reason)
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

    def delta(self, index: int, **delta: Any) -> dict[str, Any]:
        return self.chunk(
            [{"index": index, "delta": delta, "logprobs": None, "finish_reason": None}]
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
