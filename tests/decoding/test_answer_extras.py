"""The request's extra fields in the engine (docs/method.md, "The loop", step 5): sampling fields
go with every proposal, the response_format and logprobs with answer calls only, none with a
scoring read; a structured answer that does not match its format is its teacher's failure for
that trace, the next teacher tries, and none matching is a 502 that names the schema error.

Scripted fake teachers: each script writes exact answers and exact log-probabilities.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from cord_proxy.decoding import DecodeJob, DecodeOptions, decode
from cord_proxy.decoding.answer_format import FormatMismatch, structured_answer, unfenced
from cord_proxy.decoding.failures import ANSWER_FORMAT
from cord_proxy.decoding.trace import DecodeResult
from cord_proxy.errors import (
    AnswerFormatError,
    DecodeError,
    InvalidRequestError,
    TeacherUnreachableError,
)
from cord_proxy.teachers.base import CallExtras, Proposal, TokenLogprob
from tests.support.fakes import ScriptedFakeTeacher, is_answer_prefix

SCHEMA = {
    "type": "object",
    "properties": {"age": {"type": "integer"}},
    "required": ["age"],
}
PERSON = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}
SAMPLING = {"frequency_penalty": 0.5, "top_k": 20}
AnswerItem = str | Proposal | BaseException


def teacher(name: str, answer: AnswerItem) -> ScriptedFakeTeacher:
    """One step that closes the thinking (the same text for every teacher: one candidate,
    proposed first by the first teacher in the ensemble), then `answer`."""

    def script(prefix: str) -> AnswerItem:
        if is_answer_prefix(prefix):
            return answer
        return Proposal(" done.", "stop", 2, stop_string="</think>")

    return ScriptedFakeTeacher(name, proposals=script, logprobs=[-0.1])


def job(teachers: list[ScriptedFakeTeacher], extras: CallExtras) -> DecodeJob:
    options = DecodeOptions(beam_width=1, max_steps=2)
    return dataclasses.replace(DecodeJob.create("q", teachers, options), extras=extras)


async def run(answers: Mapping[str, AnswerItem], extras: CallExtras) -> DecodeResult:
    return await decode(job([teacher(name, a) for name, a in answers.items()], extras))


# --- structured answers --------------------------------------------------------------------------


async def test_an_answer_off_the_schema_falls_back_to_the_next_teacher() -> None:
    result = await run(
        {"a": '{"age": "x"}', "b": '  {"age": 7}\n'}, CallExtras(response_format=PERSON)
    )
    best = result.best
    assert best.answer == '{"age": 7}' and best.answer_teacher == "b"
    [failure] = result.failures
    assert failure.teacher == "a" and failure.role == "answer" and failure.code == ANSWER_FORMAT
    assert failure.error == (
        "teacher 'a': the answer does not match the response_format: "
        "$.age: 'x' is not of type 'integer'"
    )
    assert result.dropped == []  # a wrong answer is no strike: the call itself worked


async def test_no_answer_on_the_schema_is_a_502_that_names_the_schema_error() -> None:
    with pytest.raises(AnswerFormatError) as raised:
        await run({"a": '{"age": "x"}', "b": '{"age": "x"}'}, CallExtras(response_format=PERSON))
    error = raised.value
    assert error.status == 502 and isinstance(error, DecodeError)
    assert error.message == (
        "no teacher wrote an answer that matches the response_format: "
        "$.age: 'x' is not of type 'integer'"
    )
    assert error.to_openai()["error"]["code"] == "response_format_mismatch"


async def test_each_distinct_schema_error_is_named() -> None:
    with pytest.raises(AnswerFormatError, match=r"'age' is a required property; .*not JSON"):
        await run({"a": "{}", "b": "forty"}, CallExtras(response_format=PERSON))


async def test_a_fenced_json_object_answer_passes_unfenced() -> None:
    fenced = '\n```json\n{"ok": true}\n```\n'
    result = await run({"a": fenced}, CallExtras(response_format={"type": "json_object"}))
    assert result.best.answer == '{"ok": true}' and result.failures == []


async def test_a_json_array_is_no_json_object() -> None:
    with pytest.raises(AnswerFormatError, match=r"\$: \[1\] is not a JSON object"):
        await run({"a": "[1]"}, CallExtras(response_format={"type": "json_object"}))


async def test_without_a_response_format_any_answer_goes() -> None:
    result = await run({"a": " not json "}, CallExtras(sampling=SAMPLING))
    assert result.best.answer == "not json"


async def test_a_failed_answer_call_and_a_schema_miss_name_the_schema_miss() -> None:
    answers: dict[str, AnswerItem] = {
        "a": TeacherUnreachableError("a", "connection refused"),
        "b": '{"age": 1.5}',
    }
    with pytest.raises(AnswerFormatError, match=r"\$\.age: 1\.5 is not of type 'integer'"):
        await run(answers, CallExtras(response_format=PERSON))


def test_the_format_check_strips_fences_and_whitespace() -> None:
    assert unfenced('  ```\n{"a": 1}\n```  ') == '{"a": 1}'
    assert unfenced("```JSON\n[]```") == "[]"
    assert unfenced("text ```json\n{}\n```") == "text ```json\n{}\n```"  # not all fenced
    assert structured_answer("prose", {"type": "text"}) == "prose"
    with pytest.raises(FormatMismatch, match="not JSON"):
        structured_answer('{"a": 1', {"type": "json_object"})


def test_a_schema_that_is_no_schema_is_the_requests_fault() -> None:
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 3}}}
    with pytest.raises(InvalidRequestError) as raised:
        structured_answer("{}", bad)
    assert raised.value.status == 400
    assert raised.value.param == "response_format.json_schema.schema"


# --- answer log-probabilities --------------------------------------------------------------------

TOKENS = (
    TokenLogprob(" 4", -0.25, ((" 4", -0.25), (" 5", -1.75))),
    TokenLogprob("2", -0.5, (("2", -0.5),)),
    TokenLogprob("\n", -0.125),
)
ANSWER = Proposal(" 42\n", "stop", 3, logprobs=TOKENS)


async def test_the_answer_keeps_its_tokens_values_when_asked() -> None:
    result = await run({"a": ANSWER}, CallExtras(logprobs=1))
    best = result.best
    assert best.answer == "42"
    assert best.answer_logprobs is not None
    # the trailing newline lies outside the stripped answer: its token is left out
    assert [(t.token, t.logprob) for t in best.answer_logprobs] == [(" 4", -0.25), ("2", -0.5)]
    assert [(t.token, t.logprob) for t in best.answer_logprobs[0].top] == [
        (" 4", -0.25),
        (" 5", -1.75),
    ]


async def test_no_logprobs_are_kept_unless_asked() -> None:
    assert (await run({"a": ANSWER}, CallExtras())).best.answer_logprobs is None


async def test_a_teacher_that_gives_none_leaves_an_empty_list() -> None:
    result = await run({"a": "42"}, CallExtras(logprobs=0))
    assert result.best.answer_logprobs == []


async def test_a_fenced_answers_tokens_are_those_inside_the_fence() -> None:
    tokens = ("```", "json\n", "{", '"a": 1', "}", "\n```")
    answer = Proposal(
        "".join(tokens), "stop", 6, logprobs=tuple(TokenLogprob(t, -1.0) for t in tokens)
    )
    extras = CallExtras(response_format={"type": "json_object"}, logprobs=0)
    best = (await run({"a": answer}, extras)).best
    assert best.answer == '{"a": 1}'
    assert best.answer_logprobs is not None
    assert [t.token for t in best.answer_logprobs] == ["{", '"a": 1', "}"]


# --- where the extras go -------------------------------------------------------------------------


def calls(
    teachers: list[ScriptedFakeTeacher], kind: Callable[[ScriptedFakeTeacher], Any]
) -> list[Any]:
    return [call for t in teachers for call in kind(t)]


async def test_extras_reach_steps_sampling_only_answers_all_and_no_scoring_read() -> None:
    extras = CallExtras(sampling=SAMPLING, response_format={"type": "json_object"}, logprobs=2)
    teachers = [teacher("a", '{"x": 1}'), teacher("b", '{"x": 2}')]
    result = await decode(job(teachers, extras))
    assert result.best.answer == '{"x": 1}'
    steps = calls(teachers, ScriptedFakeTeacher.proposals_calls)
    answers = calls(teachers, ScriptedFakeTeacher.answer_calls)
    reads = calls(teachers, ScriptedFakeTeacher.score_calls)
    assert steps and answers and reads
    assert all(call.extra["extras"] == CallExtras(sampling=SAMPLING) for call in steps)
    assert all(call.extra["extras"] == extras for call in answers)
    # a scoring read takes no extras at all: the fake's `score` has no such keyword
    assert all(call.outcome == "ok" and call.extra == {} for call in reads)


async def test_no_extras_no_keyword() -> None:
    teachers = [teacher("a", "42")]
    await decode(job(teachers, CallExtras()))
    assert all("extras" not in call.extra for t in teachers for call in t.calls)


async def test_steps_get_no_keyword_when_only_answer_fields_are_set() -> None:
    teachers = [teacher("a", "{}")]
    extras = CallExtras(response_format={"type": "json_object"})
    await decode(job(teachers, extras))
    assert all("extras" not in call.extra for call in teachers[0].proposals_calls())
    assert [call.extra["extras"] for call in teachers[0].answer_calls()] == [extras]


async def test_an_answer_cut_at_the_answer_budget_says_so() -> None:
    cut = Proposal('{"age": 4', "length", 8)
    with pytest.raises(
        AnswerFormatError, match=r"not JSON .*\(the answer ran into the answer budget\)$"
    ):
        await run({"a": cut}, CallExtras(response_format=PERSON))


# --- where an answer ends ------------------------------------------------------------------------


async def test_an_answer_ends_at_a_think_close_it_writes_after_the_requests_stops() -> None:
    teachers = [teacher("a", "42")]
    options = DecodeOptions(beam_width=1, max_steps=2, answer_stop=("\n\n",))
    await decode(DecodeJob.create("q", teachers, options))
    assert [call.stop for call in teachers[0].answer_calls()] == [("\n\n", "</think>")]


async def test_a_structured_answer_is_left_to_its_format() -> None:
    teachers = [teacher("a", "{}")]
    await decode(job(teachers, CallExtras(response_format={"type": "json_object"})))
    assert [call.stop for call in teachers[0].answer_calls()] == [()]
