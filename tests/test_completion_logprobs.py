"""Answer log-probabilities in a chat completion: OpenAI's ``choices[].logprobs.content`` shape,
whole and streamed (each content chunk carries exactly the tokens of its text), parsed by the
openai SDK's own types; ``logprobs: null`` when the request asked for none."""

from __future__ import annotations

from typing import Any

from openai.types.chat import ChatCompletion, ChatCompletionChunk

from cord_proxy.completion import (
    ANSWER_CHUNK_CHARS,
    ChunkWriter,
    answer_pieces,
    completion_body,
)
from cord_proxy.decoding.trace import (
    AnswerLogprob,
    DecodeResult,
    FinishedTrace,
    StepRecord,
    TopLogprob,
)

WORDS = [" Forty", "-two", " is", " the", " answer", ",", " said", " the", " café", " owner"] * 3
LONG = "".join(WORDS).strip()


def token(text: str, value: float = -0.5, *alternatives: tuple[str, float]) -> AnswerLogprob:
    top = [TopLogprob(token=t, logprob=v) for t, v in alternatives]
    return AnswerLogprob(token=text, logprob=value, top=top)


def trace(answer: str, logprobs: list[AnswerLogprob] | None) -> FinishedTrace:
    text = "### Step 1. Add."
    step = StepRecord(
        index=1, text=text, proposers=["a"], score=0.5, log_score=-0.7, scorers=[], tokens=4
    )
    return FinishedTrace(
        reasoning=text,
        answer=answer,
        steps=[step],
        score=0.5,
        log_score=-0.7,
        closed_by="think",
        answer_teacher="a",
        answer_finish_reason="stop",
        reasoning_tokens=4,
        answer_tokens=len(logprobs or []),
        answer_logprobs=logprobs,
    )


def result(*traces: FinishedTrace) -> DecodeResult:
    return DecodeResult(
        traces=list(traces),
        score_mode="step",
        reference_used=False,
        prompt_tokens=5,
        teachers=[],
        failures=[],
        rounds=[],
        wall_s=0.1,
        answer_wait_s=0.0,
    )


def body(*traces: FinishedTrace, reasoning_format: Any = "field") -> dict[str, Any]:
    return completion_body(
        result(*traces),
        ensemble="cord",
        n=len(traces),
        reasoning_format=reasoning_format,
        request_id="chatcmpl-1",
    )


def streamed(item: FinishedTrace, inline: bool = False) -> list[dict[str, Any]]:
    return list(ChunkWriter("chatcmpl-1", "cord").answer(0, item, inline))


def spelled(chunk: dict[str, Any]) -> str:
    logprobs = chunk["choices"][0]["logprobs"]
    return "".join(t["token"] for t in logprobs["content"])


def test_a_completion_carries_its_answers_token_logprobs_in_openais_shape() -> None:
    tokens = [token("4", -0.25, ("4", -0.25), ("5", -2.0)), token("2", -0.5, ("2", -0.5))]
    completion = body(trace("42", tokens))
    assert completion["choices"][0]["logprobs"] == {
        "content": [
            {
                "token": "4",
                "logprob": -0.25,
                "bytes": [52],
                "top_logprobs": [
                    {"token": "4", "logprob": -0.25, "bytes": [52]},
                    {"token": "5", "logprob": -2.0, "bytes": [53]},
                ],
            },
            {
                "token": "2",
                "logprob": -0.5,
                "bytes": [50],
                "top_logprobs": [{"token": "2", "logprob": -0.5, "bytes": [50]}],
            },
        ],
        "refusal": None,
    }
    parsed = ChatCompletion.model_validate(completion).choices[0].logprobs
    assert parsed is not None and parsed.content is not None
    assert [t.token for t in parsed.content] == ["4", "2"]
    assert parsed.content[0].top_logprobs[1].logprob == -2.0


def test_bytes_are_the_tokens_utf8_bytes() -> None:
    completion = body(trace("café", [token("caf"), token("é")]))
    content = completion["choices"][0]["logprobs"]["content"]
    assert [t["bytes"] for t in content] == [[99, 97, 102], [195, 169]]
    ChatCompletion.model_validate(completion)


def test_no_logprobs_asked_none_sent() -> None:
    completion = body(trace("42", None), trace("43", []))
    first, second = completion["choices"]
    assert first["logprobs"] is None
    assert second["logprobs"] == {"content": [], "refusal": None}  # asked; the teacher gave none
    ChatCompletion.model_validate(completion)


def test_inline_reasoning_keeps_the_answers_logprobs() -> None:
    completion = body(trace("42", [token("42")]), reasoning_format="inline")
    assert completion["choices"][0]["message"]["content"].endswith("</think>\n\n42")
    assert completion["choices"][0]["logprobs"]["content"][0]["token"] == "42"


def test_stream_chunks_cut_the_answer_along_its_tokens() -> None:
    tokens = [token(word) for word in WORDS]
    tokens[0] = token("Forty")  # the answer is stripped: its first token has no space
    chunks = streamed(trace(LONG, tokens))
    assert len(chunks) > 1
    content = [c["choices"][0]["delta"]["content"] for c in chunks]
    assert "".join(content) == LONG
    assert "".join(spelled(c) for c in chunks) == LONG
    assert all(spelled(c) == text for c, text in zip(chunks, content, strict=True))
    assert all(len(text) < ANSWER_CHUNK_CHARS + max(map(len, WORDS)) for text in content)
    for chunk in chunks:
        parsed = ChatCompletionChunk.model_validate(chunk).choices[0]
        assert parsed.logprobs is not None and parsed.logprobs.content


def test_a_token_reaching_past_the_answer_writes_only_its_part() -> None:
    pieces = answer_pieces("42", [token(" 4"), token("2")])
    assert pieces == [("42", [token(" 4"), token("2")])]


def test_tokens_that_do_not_spell_the_answer_go_whole_with_it() -> None:
    tokens = [token("bytes:\\xe2"), token("!")]
    assert answer_pieces("‽!", tokens) == [("‽!", tokens)]
    [chunk] = streamed(trace("‽!", tokens))
    assert chunk["choices"][0]["delta"]["content"] == "‽!"
    assert len(chunk["choices"][0]["logprobs"]["content"]) == 2


def test_an_inline_stream_closes_the_thinking_without_logprobs_then_the_answer_with() -> None:
    first, answer = streamed(trace("42", [token("42")]), inline=True)
    assert first["choices"][0]["delta"]["content"] == "\n</think>\n\n"
    assert first["choices"][0]["logprobs"] is None
    assert answer["choices"][0]["delta"]["content"] == "42" and spelled(answer) == "42"


def test_a_stream_without_logprobs_is_as_before() -> None:
    chunks = streamed(trace(LONG, None))
    assert all(c["choices"][0]["logprobs"] is None for c in chunks)
    assert len(chunks[0]["choices"][0]["delta"]["content"]) == ANSWER_CHUNK_CHARS
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == LONG
