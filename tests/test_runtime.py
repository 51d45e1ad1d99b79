"""Requests become jobs: ensemble defaults, `cord` overrides, and refusals."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cord_proxy.config import CordConfig, parse_config
from cord_proxy.errors import InvalidRequestError, ModelNotFoundError
from cord_proxy.protocol import ChatCompletionRequest
from cord_proxy.request_fields import refused_field
from cord_proxy.runtime import Reachability, Runtime
from tests.support.fakes import ScriptedFakeTeacher

QUESTION = [{"role": "user", "content": "What is 2 + 3?"}]


def config() -> CordConfig:
    return parse_config(
        {
            "teachers": [
                {"name": "a", "base_url": "http://h/v1", "model": "m"},
                {"name": "b", "base_url": "http://h/v1", "model": "m", "roles": ["propose"]},
            ],
            "ensembles": [
                {
                    "name": "e",
                    "teachers": ["a", "b"],
                    "defaults": {"beam_width": 3, "thinking_budget": 900, "answer_budget": 100},
                }
            ],
        }
    )


def runtime() -> Runtime:
    teachers = {
        "a": ScriptedFakeTeacher("a"),
        "b": ScriptedFakeTeacher("b", can_score=False),
    }
    return Runtime(config(), teachers)


def request(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "e", "messages": QUESTION, **fields})


def test_ensemble_defaults_and_cord_overrides() -> None:
    job = runtime().job_for_request(
        request(
            n=2,
            seed=5,
            temperature=0.3,
            stop="END",
            cord={"beam_width": 2, "reference_answer": "5", "segmentation": "newline"},
        )
    )
    assert [t.name for t in job.decode.proposers] == ["a", "b"]
    assert [t.name for t in job.decode.scorers] == ["a"]
    options = job.decode.options
    assert (options.beam_width, options.n, options.seed, options.temperature) == (2, 2, 5, 0.3)
    assert options.segmentation == "newline" and options.answer_stop == ("END",)
    assert options.thinking_budget == 900 and job.decode.reference_answer == "5"


def test_max_completion_tokens_is_shared_in_the_budgets_ratio() -> None:
    options = runtime().job_for_request(request(max_completion_tokens=100)).decode.options
    assert (options.thinking_budget, options.answer_budget) == (90, 10)
    assert runtime().job_for_request(request(max_tokens=5000)).decode.options.thinking_budget == 900


def test_max_tokens_caps_the_answer_not_the_reasoning() -> None:
    options = runtime().job_for_request(request(max_tokens=8)).decode.options
    assert (options.thinking_budget, options.answer_budget) == (900, 8)
    both = runtime().job_for_request(request(max_tokens=8, max_completion_tokens=100))
    assert both.decode.options.thinking_budget + both.decode.options.answer_budget <= 100
    assert both.decode.options.answer_budget <= 8


def test_unknown_model_and_bad_choices_are_refused() -> None:
    with pytest.raises(ModelNotFoundError, match="'nope' does not exist"):
        runtime().job_for_request(request(model="nope"))
    with pytest.raises(InvalidRequestError, match="exceeds beam_width") as caught:
        runtime().job_for_request(request(n=4))
    assert caught.value.param == "n"
    with pytest.raises(InvalidRequestError, match="unknown teacher 'z'"):
        runtime().job_for_request(request(cord={"teachers": ["z"]}))
    with pytest.raises(InvalidRequestError, match="'b' cannot score") as caught:
        runtime().job_for_request(request(cord={"scorers": ["b"]}))
    assert caught.value.param == "cord.scorers"


def test_refused_fields_ignore_values_that_ask_for_nothing() -> None:
    assert refused_field({"tools": [], "audio": None, "tool_choice": "none"}) is None
    found = refused_field({"audio": None, "tools": [{"type": "function"}]})
    assert found is not None and found.name == "tools"


def test_blank_reference_answer_is_refused() -> None:
    with pytest.raises(ValueError, match="reference_answer"):
        request(cord={"reference_answer": "  "})


def test_cost_caps_refuse_an_amplifying_request_by_name() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        runtime().job_for_request(request(cord={"beam_width": 64, "proposals_per_teacher": 16}))
    assert caught.value.param == "cord.beam_width"
    assert "max_candidates_per_step" in caught.value.message
    with pytest.raises(InvalidRequestError) as caught:
        runtime().job_for_request(request(cord={"beam_width": 16, "max_steps": 1024}))
    assert caught.value.param == "cord.max_steps"
    assert "max_teacher_calls" in caught.value.message


def test_the_papers_setting_fits_the_default_caps() -> None:
    job = runtime().job_for_request(request(cord={"beam_width": 4, "max_steps": 64}))
    assert job.decode.options.beam_width == 4


def test_max_steps_has_a_lower_ceiling() -> None:
    with pytest.raises(ValueError, match="1024"):
        request(cord={"max_steps": 10_000})


def test_top_p_overrides_every_teacher() -> None:
    assert runtime().job_for_request(request(top_p=0.5)).decode.options.top_p == 0.5


async def test_reachability_shares_one_check_among_concurrent_callers_and_keeps_it() -> None:
    checks: list[int] = []

    class CountingReachability(Reachability):
        async def _check(self) -> dict[str, bool]:
            checks.append(1)
            await asyncio.sleep(0.05)
            return {"a": True}

    reachability = CountingReachability(config().teachers, cache_s=60.0)
    answers = await asyncio.gather(*(reachability.get() for _ in range(5)))
    assert answers == [{"a": True}] * 5 and len(checks) == 1
    assert await reachability.get() == {"a": True} and len(checks) == 1  # kept in its window
    await reachability.aclose()


def test_reasoning_effort_sets_the_thinking_budget_from_the_ensemble_levels() -> None:
    budgets = {
        effort: runtime().job_for_request(request(reasoning_effort=effort)).decode.options
        for effort in ("minimal", "low", "medium", "high")
    }
    thinking = [budgets[e].thinking_budget for e in ("minimal", "low", "medium", "high")]
    assert thinking == [1024, 4096, 16384, 32768]
    assert runtime().job_for_request(request()).decode.options.thinking_budget == 900


def test_cord_thinking_budget_wins_over_reasoning_effort() -> None:
    job = runtime().job_for_request(request(reasoning_effort="high", cord={"thinking_budget": 77}))
    assert job.decode.options.thinking_budget == 77


def test_reasoning_effort_none_is_refused_by_name() -> None:
    with pytest.raises(InvalidRequestError, match="minimal") as caught:
        runtime().job_for_request(request(reasoning_effort="none"))
    assert caught.value.param == "reasoning_effort"


def test_logprobs_are_refused_when_an_answer_teacher_cannot_give_them() -> None:
    with pytest.raises(InvalidRequestError, match="'a'") as caught:
        runtime().job_for_request(request(logprobs=True))
    assert caught.value.param == "logprobs"


def test_request_fields_reach_the_job() -> None:
    job = (
        runtime()
        .job_for_request(request(presence_penalty=0.4, min_p=0.1, metadata={"k": "v"}, store=True))
        .decode
    )
    assert job.extras.sampling == {"presence_penalty": 0.4, "min_p": 0.1}
    assert job.recorded == {"metadata": {"k": "v"}, "store": True}


def test_a_json_schema_that_is_no_schema_is_refused_before_decoding() -> None:
    bad = {"name": "x", "schema": {"type": "no-such-type"}}
    with pytest.raises(InvalidRequestError, match="not a valid JSON Schema") as caught:
        runtime().job_for_request(
            request(response_format={"type": "json_schema", "json_schema": bad})
        )
    assert caught.value.param == "response_format.json_schema.schema"
