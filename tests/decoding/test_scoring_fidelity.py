"""Regression tests for the scoring fidelity of a decode (issue: scoring on token ids).

Each was a silent bug: candidates of one round judged by different scorers, one failed
shared scoring call dropping every proposer on its endpoint, per-byte scores in reference
mode, score state kept for the whole decode, shared calls' tokens counted per teacher name.
All run against in-process scripted fake teachers with exact log-probabilities.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from cord_proxy.decoding import DecodeJob, DecodeOptions, decode
from cord_proxy.errors import TeacherUnreachableError
from cord_proxy.teachers.base import Message, Proposal
from tests.support.fakes import ScriptedFakeTeacher, is_answer_prefix

REFERENCE = "42"


def closing(text: str) -> Proposal:
    return Proposal(text, "stop", len(text.split()), stop_string="</think>")


def writer(name: str, body: str) -> ScriptedFakeTeacher:
    return ScriptedFakeTeacher(
        name,
        proposals=lambda p: "42" if is_answer_prefix(p) else closing(body),
        can_score=False,
    )


async def test_every_candidate_of_a_round_is_ranked_by_the_same_scorers() -> None:
    """The strong scorer fails on A only: A may not win on the weak scorer's word alone."""

    def strong(prefix: str, target: str) -> list[float]:
        if " A." in prefix:
            raise TeacherUnreachableError("strong", "connection reset")
        return [-3.0]

    def weak(prefix: str, target: str) -> list[float]:
        return [-1.0] if " A." in prefix else [-0.5]

    scorers = [
        ScriptedFakeTeacher("strong", logprobs=strong, can_propose=False),
        ScriptedFakeTeacher("weak", logprobs=weak, can_propose=False),
    ]
    result = await decode(
        DecodeJob.create(
            "q",
            [writer("a", " A."), writer("b", " B."), *scorers],
            DecodeOptions(beam_width=1),
            reference_answer=REFERENCE,
        )
    )
    (step,) = result.best.steps
    assert step.proposers == ["b"]
    assert [p.scorer for p in step.scorers] == ["weak"]
    assert step.log_score == pytest.approx(-0.5)
    assert result.rounds[0].scorers_left_out == ["strong"]


async def test_a_failed_shared_scoring_call_never_drops_a_proposer() -> None:
    """Three names on one endpoint: scoring fails on one candidate in each of two rounds."""

    def logprobs(prefix: str, target: str) -> list[float]:
        if prefix.endswith(" odd." + "</think> The final answer is "):
            raise TeacherUnreachableError("t0", "connection reset")
        return [-0.5]

    def propose(name: str) -> ScriptedFakeTeacher:
        def script(prefix: str) -> str:
            if is_answer_prefix(prefix):
                return "42"
            return " odd." if name == "t0" else " even."

        return ScriptedFakeTeacher(name, proposals=script, logprobs=logprobs, score_identity="one")

    teachers = [propose(f"t{i}") for i in range(3)]
    result = await decode(
        DecodeJob.create(
            "q", teachers, DecodeOptions(beam_width=1, max_steps=3), reference_answer=REFERENCE
        )
    )
    assert result.dropped == []
    assert len(result.best.steps) == 3
    score_failures = [f for f in result.failures if f.role == "score"]
    assert [f.step for f in score_failures] == [1, 2, 3]
    assert sum(t.failures for t in result.teachers) == 3  # once a call, not once a name


async def test_reference_mode_reports_eq3_even_with_byte_normalisation() -> None:
    values = [-0.2, -0.6, -1.0]
    scorer = ScriptedFakeTeacher("s", logprobs=values, can_propose=False)
    result = await decode(
        DecodeJob.create(
            "q",
            [writer("w", " step."), scorer],
            DecodeOptions(beam_width=1, score_normalisation="byte"),
            reference_answer="forty-two",
        )
    )
    assert result.best.log_score == pytest.approx(math.fsum(values) / len(values))


def reads_running() -> int:
    """Scoring reads whose tasks have not ended (reading.Reader._read_once)."""
    tasks = [t for t in asyncio.all_tasks() if not t.done()]
    return sum(getattr(t.get_coro(), "__qualname__", "") == "Reader._read_once" for t in tasks)


async def test_score_state_is_freed_when_its_round_ends() -> None:
    held: list[int] = []
    teachers = [
        ScriptedFakeTeacher(
            name,
            proposals=lambda p, n=name: "42" if is_answer_prefix(p) else f" {n} step.",
            logprobs=[-0.5],
            score_delay=0.01 if name == "a" else 0.5,  # b's reads are cut by the deadline
        )
        for name in ("a", "b")
    ]
    options = DecodeOptions(beam_width=2, max_steps=3, round_timeout=0.2)
    job = DecodeJob(
        (Message(role="user", content="q"),), tuple(teachers), tuple(teachers), options, "42"
    )
    await decode(job, on_progress=lambda _p: held.append(reads_running()))
    assert held == [0, 0, 0]


async def test_a_shared_scoring_call_counts_its_tokens_once() -> None:
    teachers = [
        ScriptedFakeTeacher(
            f"t{i}",
            proposals=lambda p: "42" if is_answer_prefix(p) else closing(" same."),
            logprobs=[-0.5, -0.5],
            score_identity="one-endpoint",
        )
        for i in range(3)
    ]
    result = await decode(
        DecodeJob.create("q", teachers, DecodeOptions(beam_width=1), reference_answer="4 2")
    )
    (call,) = [c for t in teachers for c in t.score_calls()]
    assert sum(t.score_calls for t in result.teachers) == 1
    assert sum(t.score_tokens for t in result.teachers) == len(call.prefix.split()) + 2
