"""A decode result as a chat completion: message fields, usage arithmetic, provenance, chunks."""

from __future__ import annotations

import json

from openai.types.chat import ChatCompletion, ChatCompletionChunk

from cord_proxy.completion import ChunkWriter, completion_body
from cord_proxy.decoding.trace import (
    CandidateRecord,
    DecodeResult,
    FinishedTrace,
    StepRecord,
    TeacherUsage,
)


def step(index: int, text: str, by: str) -> StepRecord:
    return StepRecord(
        index=index, text=text, proposers=[by], score=0.5, log_score=-0.69, scorers=[], tokens=10
    )


def trace(answer: str, score: float, finish: str = "stop") -> FinishedTrace:
    steps = [step(1, "### Step 1. Add.\n\n", "a"), step(2, "### Step 2. Done.\n\n", "b")]
    return FinishedTrace(
        reasoning="### Step 1. Add.\n\n### Step 2. Done.",
        answer=answer,
        steps=steps,
        score=score,
        log_score=-1.0,
        closed_by="think",
        answer_teacher="b",
        answer_finish_reason=finish,  # type: ignore[arg-type]
        reasoning_tokens=20,
        answer_tokens=3,
    )


def result() -> DecodeResult:
    return DecodeResult(
        traces=[trace("5", 0.4), trace("6", 0.3, "length")],
        score_mode="reference",
        reference_used=True,
        prompt_tokens=12,
        teachers=[TeacherUsage(name="a", cost_usd=0.25), TeacherUsage(name="b", cost_usd=0.5)],
        failures=[],
        rounds=[],
        wall_s=1.0,
        answer_wait_s=0.1,
    )


def test_completion_body_is_a_valid_chat_completion() -> None:
    body = completion_body(
        result(), ensemble="cord", n=2, reasoning_format="field", request_id="chatcmpl-1"
    )
    completion = ChatCompletion.model_validate(body)
    first, second = completion.choices
    assert first.message.content == "5" and second.finish_reason == "length"
    assert (first.message.model_extra or {})["reasoning_content"].startswith("### Step 1.")
    usage = completion.usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens == 2 * (20 + 3)
    assert usage.completion_tokens_details.reasoning_tokens == 40
    assert usage.total_tokens == 12 + 46
    cord = body["cord"]
    assert cord["cost_usd"] == 0.75 and len(cord["choices"]) == 2 and cord["steps"]


def test_inline_format_puts_the_trace_in_content() -> None:
    body = completion_body(
        result(), ensemble="cord", n=1, reasoning_format="inline", request_id="chatcmpl-1"
    )
    message = body["choices"][0]["message"]
    assert message["content"].startswith("<think>\n### Step 1.")
    assert message["content"].endswith("</think>\n\n5") and "reasoning_content" not in message


def test_stream_chunks_are_valid_and_rebuild_the_message() -> None:
    writer = ChunkWriter("chatcmpl-1", "cord")
    best = result().traces[0]
    chunks = [
        writer.role(1),
        *writer.steps(0, best.steps, first=True, inline=False),
        *writer.answer(0, best, inline=False),
        writer.finish([best], {"steps": []}),
    ]
    parsed = [ChatCompletionChunk.model_validate(c) for c in chunks]
    reasoning = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content", "")
        for c in parsed
        if c.choices
    )
    content = "".join(c.choices[0].delta.content or "" for c in parsed if c.choices)
    assert reasoning.strip() == best.reasoning and content == "5"
    assert parsed[0].choices[0].delta.role == "assistant"
    assert parsed[-1].choices[0].finish_reason == "stop"


def test_an_unscored_candidate_is_null_in_the_json_not_infinity() -> None:
    record = CandidateRecord(
        parent=0,
        text="### Step 1. x",
        proposers=["a"],
        score=None,
        log_score=None,
        scorers=[],
        tokens=1,
        finish_reason="stop",
    )
    text = json.dumps(record.model_dump(), allow_nan=False)
    assert '"score": null' in text and '"log_score": null' in text
