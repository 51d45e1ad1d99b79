"""Decode semantics and failure handling (issue: no 500, no stall, no surprise).

Step-mode ranking by the whole trace, seeded reproducibility under random delays, finished
traces competing for their slot, the round deadline, consecutive failures, timeouts as 504,
the teacher's context and top_p. All against in-process scripted fake teachers.
"""

from __future__ import annotations

import asyncio
import random
import time
from operator import mul

import pytest

from cord_proxy.decoding import DecodeJob, DecodeOptions, decode
from cord_proxy.decoding.trace import DecodeResult
from cord_proxy.errors import (
    ContextLengthExceededError,
    DecodeError,
    ScoredPromptTooLongError,
    TeacherTimeoutError,
    TeacherUnreachableError,
)
from cord_proxy.teachers.base import Proposal
from tests.support.fakes import ScriptedFakeTeacher, digest, hashed_logprobs, is_answer_prefix

REFERENCE = "42"


def closing(text: str, tokens: int = 2) -> Proposal:
    return Proposal(text, "stop", tokens, stop_string="</think>")


async def test_step_mode_ranks_a_trace_by_all_its_steps() -> None:
    """A first step at -9.0 is not forgiven by a good last step (token-weighted mean)."""

    def propose(name: str):  # type: ignore[no-untyped-def]
        def script(prefix: str) -> str | Proposal:
            if is_answer_prefix(prefix):
                return "42"
            if prefix.endswith("### Step 1."):
                return f" {name} one."
            return closing(f" {name} two.")

        return script

    def judge(prefix: str, target: str) -> list[float]:
        if target == " bad one.":
            return [-9.0, -9.0]
        if target == " bad two.":
            return [-0.1, -0.1] if "bad one." in prefix else [-5.0, -5.0]
        return [-0.5, -0.5]

    proposers = [
        ScriptedFakeTeacher(n, proposals=propose(n), can_score=False) for n in ("bad", "good")
    ]
    judges = [ScriptedFakeTeacher(f"judge{i}", logprobs=judge, can_propose=False) for i in range(2)]
    result = await decode(DecodeJob.create("q", [*proposers, *judges], DecodeOptions(beam_width=2)))
    assert result.score_mode == "step"
    assert [s.proposers for s in result.best.steps] == [["good"], ["good"]]
    # Each judge's readings are centred on its mean over the round (docs/method.md, "Fair
    # ranking"): step 1 reads -9.0 and -0.5 (mean -4.75); step 2 -0.1, -0.5, -5.0, -0.5.
    one, two = (4.25, 1.025), (4.25, -3.475)  # good one + good two, good one + bad two
    weights = [s.tokens for s in result.best.steps]
    assert result.best.log_score == pytest.approx(sum(map(mul, one, weights)) / sum(weights))
    weights = [s.tokens for s in result.traces[1].steps]
    assert [s.proposers for s in result.traces[1].steps] == [["good"], ["bad"]]
    assert result.traces[1].log_score == pytest.approx(sum(map(mul, two, weights)) / sum(weights))


def delayed_team(seed: int) -> list[ScriptedFakeTeacher]:
    jitter = random.Random(seed)

    def propose(name: str):  # type: ignore[no-untyped-def]
        def script(prefix: str) -> str | Proposal:
            if is_answer_prefix(prefix):
                return f"answer by {name}"
            if prefix.count("### Step") >= 3:
                return closing(" done.")
            return " the same step." if name != "c" else f" c says {digest(prefix)}."

        return script

    return [
        ScriptedFakeTeacher(
            name,
            proposals=propose(name),
            logprobs=hashed_logprobs("judge"),
            propose_delay=lambda _p: jitter.random() * 0.02,
            score_delay=lambda _p, _t: jitter.random() * 0.02,
            score_identity="one-judge",
        )
        for name in "abc"
    ]


def fingerprint(result: DecodeResult) -> str:
    return "\n".join(
        [
            result.best.reasoning,
            result.best.answer,
            *(s.model_dump_json() for s in result.best.steps),
        ]
    )


async def test_a_seeded_decode_does_not_depend_on_arrival_order() -> None:
    options = DecodeOptions(beam_width=2, max_steps=4, seed=7, include_candidates=True)
    runs = [
        fingerprint(
            await decode(
                DecodeJob.create("q", delayed_team(run), options, reference_answer=REFERENCE)
            )
        )
        for run in range(10)
    ]
    assert len(set(runs)) == 1
    assert "### Step 1." in runs[0]


async def test_a_finished_trace_keeps_its_slot_only_while_in_the_top_b() -> None:
    """B = 2: a trace that finished at step 1 gives its slot to two better live beams."""

    def script(name: str):  # type: ignore[no-untyped-def]
        def propose(prefix: str) -> str | Proposal:
            if is_answer_prefix(prefix):
                return "42"
            if name == "quitter":
                return closing(" I give up.")
            return f" {name} {digest(prefix)}."

        return propose

    def judge(prefix: str, target: str) -> list[float]:
        if "give up" in prefix:
            return [-0.1]
        return [-0.05] if "### Step 2." in prefix else [-0.5]

    teachers = [
        ScriptedFakeTeacher(n, proposals=script(n), can_score=False) for n in ("quitter", "x", "y")
    ]
    meta = ScriptedFakeTeacher("meta", logprobs=judge, can_propose=False)
    live_counts: list[int] = []
    result = await decode(
        DecodeJob.create(
            "q",
            [*teachers, meta],
            DecodeOptions(beam_width=2, max_steps=3),
            reference_answer=REFERENCE,
        ),
        on_progress=lambda p: live_counts.append(p.live_beams),
    )
    assert live_counts == [1, 2, 2]
    assert result.best.closed_by == "max_steps"
    assert any("give up" in t.reasoning for t in result.traces[2:])  # kept as an alternative


async def test_the_round_deadline_cuts_stragglers_and_goes_on() -> None:
    fast = ScriptedFakeTeacher(
        "fast",
        proposals=lambda p: "42" if is_answer_prefix(p) else closing(" quick."),
        logprobs=[-0.5],
    )
    stalled = ScriptedFakeTeacher(
        "stalled",
        proposals=lambda p: "42" if is_answer_prefix(p) else closing(" slow."),
        propose_delay=lambda p: 0.0 if is_answer_prefix(p) else 30.0,
        can_score=False,
    )
    started = time.perf_counter()
    result = await asyncio.wait_for(
        decode(
            DecodeJob.create(
                "q",
                [fast, stalled],
                DecodeOptions(beam_width=1, round_timeout=0.3),
                reference_answer=REFERENCE,
            )
        ),
        10,
    )
    assert time.perf_counter() - started < 5
    assert result.rounds[0].cut == ["stalled"]
    assert [(f.teacher, f.code) for f in result.failures] == [("stalled", "round_timeout")]
    assert stalled.in_flight == 0
    assert result.best.steps[0].proposers == ["fast"]


async def test_a_scorer_cut_at_the_round_deadline_leaves_the_scores_that_arrived() -> None:
    """A healthy scorer's parts are kept when another scorer is cut: the round goes on."""
    fast = ScriptedFakeTeacher(
        "fast",
        proposals=lambda p: "42" if is_answer_prefix(p) else closing(" quick."),
        logprobs=[-0.5],
    )
    slow_scorer = ScriptedFakeTeacher(
        "slow-scorer", logprobs=[-0.1], score_delay=30.0, can_propose=False
    )
    result = await asyncio.wait_for(
        decode(
            DecodeJob.create(
                "q",
                [fast, slow_scorer],
                DecodeOptions(beam_width=1, round_timeout=0.3),
                reference_answer=REFERENCE,
            )
        ),
        10,
    )
    assert result.rounds[0].cut == ["slow-scorer"]
    assert result.rounds[0].scorers_left_out == ["slow-scorer"]
    assert [s.scorer for s in result.best.steps[0].scorers] == ["fast"]
    assert slow_scorer.in_flight == 0


async def test_only_consecutive_failures_drop_a_teacher() -> None:
    def flaky(prefix: str) -> str | BaseException | Proposal:
        if is_answer_prefix(prefix):
            return "42"
        if prefix.endswith(("### Step 1.", "### Step 3.")):
            return TeacherUnreachableError("flaky", "connection reset")
        return f" flaky {digest(prefix)}."

    teachers = [
        ScriptedFakeTeacher("flaky", proposals=flaky, logprobs=[-0.5]),
        ScriptedFakeTeacher(
            "steady", proposals=lambda p: "42" if is_answer_prefix(p) else " ok.", logprobs=[-0.5]
        ),
    ]
    result = await decode(
        DecodeJob.create(
            "q", teachers, DecodeOptions(beam_width=1, max_steps=4), reference_answer=REFERENCE
        )
    )
    assert [f.step for f in result.failures] == [1, 3]
    assert result.dropped == []


async def test_every_proposer_timing_out_is_a_504() -> None:
    def timing_out(prefix: str) -> BaseException:
        return TeacherTimeoutError("slow", "no answer within 120 s")

    slow = ScriptedFakeTeacher("slow", proposals=timing_out, logprobs=[-0.5])
    with pytest.raises(DecodeError) as caught:
        await decode(
            DecodeJob.create("q", [slow], DecodeOptions(beam_width=1), reference_answer=REFERENCE)
        )
    assert caught.value.status == 504


async def test_a_full_context_closes_the_trace() -> None:
    def script(prefix: str) -> Proposal | str:
        if is_answer_prefix(prefix):
            return "42"
        if prefix.endswith("### Step 2."):
            return Proposal("", "length", 0, context_full=True)
        return " a step."

    teacher = ScriptedFakeTeacher("t", proposals=script, logprobs=[-0.5])
    result = await decode(
        DecodeJob.create("q", [teacher], DecodeOptions(beam_width=1), reference_answer=REFERENCE)
    )
    assert result.best.closed_by == "context"
    assert result.best.answer == "42"


async def test_top_p_and_the_answer_reserve_reach_the_teacher() -> None:
    teacher = ScriptedFakeTeacher(
        "t", proposals=lambda p: "42" if is_answer_prefix(p) else closing(" x."), logprobs=[-1.0]
    )
    await decode(
        DecodeJob.create(
            "q",
            [teacher],
            DecodeOptions(beam_width=1, top_p=0.8, answer_budget=77),
            reference_answer=REFERENCE,
        )
    )
    step, answer = teacher.proposals_calls()[0], teacher.answer_calls()[0]
    assert step.extra == {"top_p": 0.8, "reserve": 77}
    assert answer.extra == {"top_p": 0.8}


async def test_messages_that_fill_every_context_are_a_400() -> None:
    full = Proposal("", "length", 0, context_full=True)
    teachers = [ScriptedFakeTeacher(n, proposals=lambda p: full, logprobs=[-0.5]) for n in "ab"]
    with pytest.raises(ContextLengthExceededError) as caught:
        await decode(
            DecodeJob.create(
                "q" * 9000, teachers, DecodeOptions(beam_width=2), reference_answer="4"
            )
        )
    assert (caught.value.status, caught.value.param) == (400, "messages")


async def test_a_reference_longer_than_every_scorer_context_is_a_400() -> None:
    def too_long(prefix: str, target: str) -> list[float]:
        raise ScoredPromptTooLongError("t", "the scored prompt has 20089 tokens, over 2048")

    teacher = ScriptedFakeTeacher("t", proposals=lambda p: " step.", logprobs=too_long)
    with pytest.raises(ContextLengthExceededError) as caught:
        await decode(
            DecodeJob.create("q", [teacher], DecodeOptions(beam_width=1), reference_answer="4" * 9)
        )
    assert caught.value.param == "cord.reference_answer"


async def test_steps_sent_as_certain_belong_to_the_best_trace_even_one_pushed_out() -> None:
    """A trace that finished early and fell out of the beam can be the best at the end: the
    steps streamed as certain must be its steps too, so it holds them back while it lives."""
    script = {
        "a": {1: closing(" done."), 2: " x.", 3: closing(" last a.")},
        "b": {1: " live1.", 2: " y.", 3: closing(" last b.")},
    }

    def propose(name: str):  # type: ignore[no-untyped-def]
        def one(prefix: str) -> str | Proposal:
            return "42" if is_answer_prefix(prefix) else script[name][prefix.count("### Step")]

        return one

    def reading(prefix: str, _target: str) -> list[float]:
        marks = {"last": -3.0, "done.": -0.2, " x.": -0.1, " y.": -0.15, "live1.": -1.0}
        return [next(v for mark, v in marks.items() if mark in prefix)]

    teachers = [ScriptedFakeTeacher(n, proposals=propose(n), logprobs=reading) for n in "ab"]
    certain: list[str] = []
    result = await decode(
        DecodeJob.create("q", teachers, DecodeOptions(beam_width=2), reference_answer="42"),
        on_progress=lambda p: certain.extend(s.text for s in p.certain_steps),
    )
    assert "done." in result.best.reasoning and result.best.log_score == pytest.approx(-0.2)
    assert certain == [s.text for s in result.best.steps[: len(certain)]]


async def test_the_final_comparison_reads_within_a_rounds_deadline() -> None:
    """A finished trace that lacks a scorer's reading is read again at the end (reference
    mode); a scorer that hangs there is cut at the round deadline, not waited for."""

    def propose(name: str):  # type: ignore[no-untyped-def]
        def one(prefix: str) -> str | Proposal:
            if is_answer_prefix(prefix):
                return "42"
            if prefix.count("### Step") == 1:
                return closing(" first.") if name == "p1" else " go."
            return closing(f" {name} ends.")

        return one

    def hangs_on_first(prefix: str, _target: str) -> float:
        return 30.0 if "first." in prefix else 0.0

    proposers = [
        ScriptedFakeTeacher(n, proposals=propose(n), can_score=False) for n in ("p1", "p2")
    ]
    steady = ScriptedFakeTeacher("steady", logprobs=[-0.5], can_propose=False)
    slow = ScriptedFakeTeacher(
        "slow", logprobs=[-0.5], can_propose=False, score_delay=hangs_on_first
    )
    options = DecodeOptions(beam_width=2, max_steps=2, round_timeout=0.5)
    started = time.perf_counter()
    result = await decode(
        DecodeJob.create("q", [*proposers, steady, slow], options, reference_answer="42")
    )
    assert time.perf_counter() - started < 10.0
    assert any("first." in t.reasoning for t in result.traces) and len(result.traces) >= 2
    cut = [f for f in result.failures if f.teacher == "slow" and f.code == "round_timeout"]
    assert len(cut) >= 2  # its round, and the final comparison (or the round after)
    assert slow.in_flight == 0
