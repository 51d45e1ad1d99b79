"""The beam search driver (docs/method.md, "The loop"): selection, merging, stopping, the answer,
concurrency, cancellation and failures, all against in-process scripted fake teachers."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from cord_proxy.decoding import DecodeJob, DecodeOptions, decode
from cord_proxy.decoding.tokens import count_tokens
from cord_proxy.errors import DecodeError, TeacherError, TeacherUnreachableError
from cord_proxy.teachers.base import Message, Proposal, SpanScore
from tests.support.fakes import (
    ConcurrencyMeter,
    ScriptedFakeTeacher,
    digest,
    hashed_logprobs,
    is_answer_prefix,
    wait_until,
)

ANSWER_PROMPT = "</think> The final answer is "
REFERENCE = "42"
TOL = 1e-9

Script = Callable[[str], str | Proposal | BaseException]


def hand_mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def closing(text: str, tokens: int | None = None) -> Proposal:
    """A step that ends the thinking block (the teacher stopped at ``</think>``)."""
    return Proposal(text, "stop", tokens or len(text.split()), stop_string="</think>")


def down(name: str) -> TeacherUnreachableError:
    return TeacherUnreachableError(name, "connection refused")


def pending_tasks() -> list[asyncio.Task[object]]:
    current = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t is not current and not t.done()]


# --- selection equals a brute-force top-B --------------------------------------------------------


@dataclass
class HandCandidate:
    parent: int
    prefix: str  # what the teacher continued: parent text + opening
    body: str
    proposer: str
    log_score: float

    @property
    def text(self) -> str:
        """The step as the candidate record shows it: the driver's marker and the body."""
        return self.prefix[self.prefix.rindex("### Step") :] + self.body


def thinking_body(name: str, prefix: str) -> str:
    """Each teacher writes a different step for every prefix (no merges)."""
    return f" {name} thinks {digest(prefix)}."


def make_thinkers(names: list[str]) -> list[ScriptedFakeTeacher]:
    return [
        ScriptedFakeTeacher(
            name,
            proposals=lambda p, name=name: "42" if is_answer_prefix(p) else thinking_body(name, p),
            logprobs=hashed_logprobs(f"scorer-{name}"),
        )
        for name in names
    ]


def hand_reference_score(
    scorers: list[ScriptedFakeTeacher], weights: dict[str, float], context: str
) -> float:
    parts = [(weights[s.name], hand_mean(s.logprobs_for(context, REFERENCE))) for s in scorers]
    return math.fsum(w * v for w, v in parts) / math.fsum(w for w, _ in parts)


def brute_force_top(candidates: list[HandCandidate], width: int) -> set[int]:
    """Indices of the `width` candidates with the largest total score, over every subset."""
    size = min(width, len(candidates))
    best = max(
        itertools.combinations(range(len(candidates)), size),
        key=lambda chosen: math.fsum(candidates[i].log_score for i in chosen),
    )
    return set(best)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
async def test_selection_equals_brute_force_top_b(width: int) -> None:
    teachers = make_thinkers(["a", "b", "c"])
    weights = {"a": 1.0, "b": 2.0, "c": 0.5}
    steps = 3

    result = await decode(
        DecodeJob.create(
            "q",
            teachers,
            DecodeOptions(beam_width=width, max_steps=steps, include_candidates=True),
            reference_answer=REFERENCE,
            scorer_weights=weights,
        )
    )

    # The same search by hand: every candidate, scored from the scripts; keep a brute-force top-B.
    beams = ["<think>\n"]  # texts, best first (the driver's beam index is the rank)
    paths: list[list[HandCandidate]] = [[]]
    for step in range(1, steps + 1):
        opening = f"### Step {step}."
        candidates = [
            HandCandidate(
                parent=parent,
                prefix=text + opening,
                body=(body := thinking_body(t.name, text + opening)),
                proposer=t.name,
                log_score=hand_reference_score(
                    teachers, weights, text + opening + body + ANSWER_PROMPT
                ),
            )
            for parent, text in enumerate(beams)
            for t in teachers
        ]
        kept = brute_force_top(candidates, width)

        # What the driver saw and kept at this step (every surviving step record holds them).
        records = result.traces[0].steps[step - 1].candidates
        assert records is not None
        assert len(records) == len(candidates) == len(beams) * len(teachers)
        driver = {(r.parent, r.text): r for r in records}
        assert set(driver) == {(c.parent, c.text) for c in candidates}
        for c in candidates:
            record = driver[(c.parent, c.text)]
            assert record.proposers == [c.proposer]
            assert record.log_score == pytest.approx(c.log_score, abs=TOL)
            assert record.score == pytest.approx(math.exp(c.log_score), rel=1e-12, abs=0.0)
        assert {k for k, r in driver.items() if r.selected} == {
            (candidates[i].parent, candidates[i].text) for i in kept
        }

        ranked = sorted(kept, key=lambda i: -candidates[i].log_score)
        paths = [[*paths[candidates[i].parent], candidates[i]] for i in ranked]
        beams = [candidates[i].prefix + candidates[i].body + "\n\n" for i in ranked]

    # The finished traces are the hand beams, best first, each with its own path.
    assert len(result.traces) == len(paths)
    for trace, path in zip(result.traces, paths, strict=True):
        assert [s.text for s in trace.steps] == [c.text + "\n\n" for c in path]
        assert [s.proposers for s in trace.steps] == [[c.proposer] for c in path]
        assert trace.log_score == pytest.approx(path[-1].log_score, abs=TOL)
        assert trace.closed_by == "max_steps"


async def test_beam_width_one_is_greedy() -> None:
    """B = 1: every step keeps the single best of the K proposals of the one prefix."""
    # Step n's winner is fixed by which teacher wrote it: a, then c, then b.
    winners = {1: "a", 2: "c", 3: "b"}

    def proposals(name: str) -> Script:
        def script(prefix: str) -> str | Proposal:
            if is_answer_prefix(prefix):
                return "42"
            step = prefix.count("### Step")
            body = f" {name} at {step}."
            return closing(body) if step == 3 else body

        return script

    def logprobs(prefix: str, target: str) -> list[float]:
        step = prefix.count("### Step")
        return [-0.1] if f" {winners[step]} at {step}." in prefix else [-1.0, -2.0]

    teachers = [ScriptedFakeTeacher(n, proposals=proposals(n), can_score=False) for n in "abc"]
    meta = ScriptedFakeTeacher("meta", logprobs=logprobs, can_propose=False)

    result = await decode(
        DecodeJob.create(
            "q",
            [*teachers, meta],
            DecodeOptions(beam_width=1, include_candidates=True),
            reference_answer=REFERENCE,
        )
    )

    assert len(result.traces) == 1
    trace = result.best
    assert [s.proposers for s in trace.steps] == [["a"], ["c"], ["b"]]
    assert [s.text for s in trace.steps] == [
        "### Step 1. a at 1.\n\n",
        "### Step 2. c at 2.\n\n",
        "### Step 3. b at 3.\n\n",
    ]
    for step in trace.steps:
        assert step.candidates is not None
        assert len(step.candidates) == 3
        assert {c.parent for c in step.candidates} == {0}
        assert [c.selected for c in step.candidates].count(True) == 1
        (best,) = [c for c in step.candidates if c.selected]
        assert best.log_score == max(c.log_score for c in step.candidates) == pytest.approx(-0.1)
    # Only one prefix was ever continued: one proposal per teacher per step.
    for teacher in teachers:
        assert len(teacher.proposals_calls()) == 3


# --- merging ------------------------------------------------------------------------------------


async def test_identical_candidates_are_merged_with_both_proposers_kept() -> None:
    """Same text after whitespace normalisation, same parent: one candidate, two proposers."""
    bodies = {"a": " add  the\tnumbers.", "b": "add the numbers. ", "c": " guess."}
    teachers = [
        ScriptedFakeTeacher(
            name,
            proposals=lambda p, name=name: "42" if is_answer_prefix(p) else closing(bodies[name]),
            # b answers after a, so the merged candidate is a's and b joins it.
            propose_delay=0.05 if name == "b" else 0.0,
            can_score=False,
        )
        for name in bodies
    ]
    meta = ScriptedFakeTeacher(
        "meta",
        logprobs=lambda prefix, target: [-0.1] if "numbers" in prefix else [-3.0],
        can_propose=False,
    )

    result = await decode(
        DecodeJob.create(
            "q",
            [*teachers, meta],
            DecodeOptions(beam_width=2, include_candidates=True),
            reference_answer=REFERENCE,
        )
    )

    records = result.best.steps[0].candidates
    assert records is not None
    assert sorted((r.text, tuple(r.proposers)) for r in records) == [
        ("### Step 1. add  the\tnumbers.", ("a", "b")),
        ("### Step 1. guess.", ("c",)),
    ]
    # The merged candidate was scored once, and it won with both proposers in its provenance.
    assert len(meta.score_calls()) == 2
    assert result.best.steps[0].proposers == ["a", "b"]
    assert result.best.answer_teacher == "a"
    usage = {u.name: u for u in result.teachers}
    assert (usage["a"].selected, usage["b"].selected, usage["c"].selected) == (1, 1, 1)
    # Both beams finished at step 1: a and c each wrote one step and one answer, b one step.
    assert (usage["a"].proposals, usage["b"].proposals, usage["c"].proposals) == (2, 1, 2)


async def test_identical_text_under_different_parents_is_not_merged() -> None:
    def script(name: str) -> Script:
        def propose(prefix: str) -> str | Proposal:
            if is_answer_prefix(prefix):
                return "42"
            return f" {name} starts." if prefix.endswith("### Step 1.") else closing(" same end.")

        return propose

    teachers = [ScriptedFakeTeacher(n, proposals=script(n), can_score=False) for n in "ab"]
    meta = ScriptedFakeTeacher("meta", logprobs=hashed_logprobs("meta"), can_propose=False)

    result = await decode(
        DecodeJob.create(
            "q",
            [*teachers, meta],
            DecodeOptions(beam_width=2, include_candidates=True),
            reference_answer=REFERENCE,
        )
    )

    records = result.best.steps[1].candidates
    assert records is not None
    # Two parents, each with one merged candidate written by both teachers.
    assert sorted((r.parent, r.text, frozenset(r.proposers)) for r in records) == [
        (0, "### Step 2. same end.", frozenset("ab")),
        (1, "### Step 2. same end.", frozenset("ab")),
    ]
    assert all(len(r.proposers) == 2 for r in records)
    assert len(result.traces) == 2


# --- stopping and the final answer -------------------------------------------------------------


async def test_thinking_budget_closes_the_thinking_block() -> None:
    writer = ScriptedFakeTeacher(
        "writer",
        proposals=lambda p: "42" if is_answer_prefix(p) else " a b c d",  # 4 tokens a step
        logprobs=[-0.5],
    )

    result = await decode(
        DecodeJob.create(
            "q",
            [writer],
            DecodeOptions(beam_width=1, thinking_budget=22),
            reference_answer=REFERENCE,
        )
    )

    calls = writer.proposals_calls()
    # The budget counts each step's whole text, marker and separator too, in o200k_base
    # ("### Step 1. a b c d\n\n" is 10 tokens); a step may ask for at most what is left,
    # so the third is cut at 2 of the teacher's tokens, and closes the thinking.
    steps = ["### Step 1. a b c d\n\n", "### Step 2. a b c d\n\n", "### Step 3. a b\n\n"]
    assert [count_tokens(s) for s in steps] == [10, 10, 8]
    assert [c.max_tokens for c in calls] == [22, 12, 2]
    trace = result.best
    assert trace.closed_by == "budget"
    assert trace.reasoning_tokens == 28
    assert [s.tokens for s in trace.steps] == [10, 10, 8]
    assert trace.steps[-1].text == "### Step 3. a b\n\n"
    # The driver appended </think> at once, and the answer was written after it.
    (answer,) = writer.answer_calls()
    assert answer.prefix == (
        "<think>\n### Step 1. a b c d\n\n### Step 2. a b c d\n\n### Step 3. a b\n\n</think>\n\n"
    )
    assert trace.reasoning == "### Step 1. a b c d\n\n### Step 2. a b c d\n\n### Step 3. a b"
    assert trace.answer == "42"


async def test_teacher_ending_its_output_closes_the_trace() -> None:
    writer = ScriptedFakeTeacher(
        "writer",
        proposals=lambda p: "42" if is_answer_prefix(p) else Proposal(" done.", "closed", 2),
        logprobs=[-0.5],
    )

    result = await decode(
        DecodeJob.create("q", [writer], DecodeOptions(beam_width=1), reference_answer=REFERENCE)
    )

    assert result.best.closed_by == "eos"
    assert len(writer.proposals_calls()) == 1


async def test_max_steps_closes_the_leftover_beams() -> None:
    writer = ScriptedFakeTeacher(
        "writer", proposals=lambda p: "42" if is_answer_prefix(p) else " more.", logprobs=[-0.5]
    )

    result = await decode(
        DecodeJob.create(
            "q", [writer], DecodeOptions(beam_width=1, max_steps=2), reference_answer=REFERENCE
        )
    )

    assert result.best.closed_by == "max_steps"
    assert len(result.best.steps) == 2
    assert writer.answer_calls()[0].prefix.endswith("### Step 2. more.\n\n</think>\n\n")


def two_writers(
    answer_failures: frozenset[str] = frozenset(),
) -> tuple[ScriptedFakeTeacher, ScriptedFakeTeacher, ScriptedFakeTeacher]:
    """a writes the best step 1, b the best (closing) step 2; each answers in its own words."""

    def script(name: str) -> Script:
        def propose(prefix: str) -> str | Proposal | BaseException:
            if is_answer_prefix(prefix):
                return down(name) if name in answer_failures else f" {name} says 42 "
            if prefix.endswith("### Step 1."):
                return f" {name} opens."
            return closing(f" {name} closes.")

        return propose

    def logprobs(prefix: str, target: str) -> list[float]:
        good = prefix.endswith("### Step 1. a opens." + ANSWER_PROMPT) or ("b closes." in prefix)
        return [-0.1] if good else [-2.0]

    a = ScriptedFakeTeacher("a", proposals=script("a"), can_score=False)
    b = ScriptedFakeTeacher("b", proposals=script("b"), can_score=False)
    meta = ScriptedFakeTeacher("meta", logprobs=logprobs, can_propose=False)
    return a, b, meta


async def test_final_answer_comes_from_the_last_steps_proposer() -> None:
    a, b, meta = two_writers()

    result = await decode(
        DecodeJob.create(
            "q", [a, b, meta], DecodeOptions(beam_width=1, answer_budget=77), reference_answer="42"
        )
    )

    trace = result.best
    assert [s.proposers for s in trace.steps] == [["a"], ["b"]]
    assert trace.answer_teacher == trace.steps[-1].proposers[0] == "b"
    assert trace.answer == "b says 42"
    assert a.answer_calls() == []
    (call,) = b.answer_calls()
    assert call.prefix == "<think>\n### Step 1. a opens.\n\n### Step 2. b closes.\n\n</think>\n\n"
    assert call.stop == ("</think>",)  # no thinking is left to close
    assert call.max_tokens == 77
    assert trace.answer_finish_reason == "stop"


async def test_another_teacher_answers_when_the_last_steps_proposer_fails() -> None:
    a, b, meta = two_writers(answer_failures=frozenset({"b"}))

    result = await decode(
        DecodeJob.create("q", [a, b, meta], DecodeOptions(beam_width=1), reference_answer="42")
    )

    trace = result.best
    assert trace.steps[-1].proposers == ["b"]
    assert trace.answer_teacher == "a"
    assert trace.answer == "a says 42"
    assert [(f.step, f.teacher, f.role) for f in result.failures] == [(2, "b", "answer")]


# --- concurrency ---------------------------------------------------------------------------------


async def test_every_proposal_of_a_step_is_in_flight_at_once() -> None:
    """B = 2 after step 1, K = 3: the 6 proposals of step 2 all start before any ends."""
    meter = ConcurrencyMeter()
    teachers = [
        ScriptedFakeTeacher(
            name,
            proposals=lambda p, name=name: "42" if is_answer_prefix(p) else thinking_body(name, p),
            logprobs=hashed_logprobs(name),
            propose_delay=lambda p: 0.0 if is_answer_prefix(p) else 0.05,
            meter=meter,
        )
        for name in "abc"
    ]

    await decode(
        DecodeJob.create(
            "q", teachers, DecodeOptions(beam_width=2, max_steps=2), reference_answer=REFERENCE
        )
    )

    calls = [c for t in teachers for c in t.proposals_calls()]
    step2 = [c for c in calls if c.prefix.endswith("### Step 2.")]
    assert len(step2) == 6
    assert len({c.prefix for c in step2}) == 2  # two parents
    assert max(c.started for c in step2) < min(c.ended for c in step2 if c.ended is not None)
    assert meter.max_by_kind["propose"] == 6
    for teacher in teachers:
        assert teacher.max_in_flight_by_kind["propose"] == 2  # one per parent


class BatchingFakeScorer(ScriptedFakeTeacher):
    """A FAKE scorer that takes a round's reads in one batch, and notes each batch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[tuple[float, list[tuple[str, str]]]] = []

    async def score_many(
        self, conversation: Sequence[Message], questions: Sequence[tuple[str, str]]
    ) -> list[SpanScore | TeacherError]:
        self.batches.append((time.perf_counter(), list(questions)))
        return list(await asyncio.gather(*(self.score(conversation, p, t) for p, t in questions)))


async def test_a_round_is_read_in_one_batch_per_scorer_once_every_proposal_is_in() -> None:
    slow = 0.3
    teachers = [
        ScriptedFakeTeacher(
            name,
            proposals=lambda p, name=name: "42" if is_answer_prefix(p) else f" {name} step.",
            propose_delay=(lambda p: 0.0 if is_answer_prefix(p) else slow) if name == "c" else 0.0,
            can_score=False,
        )
        for name in "abc"
    ]
    meta = BatchingFakeScorer("meta", logprobs=[-0.5], can_propose=False)

    result = await decode(
        DecodeJob.create(
            "q",
            [*teachers, meta],
            DecodeOptions(beam_width=1, max_steps=1),
            reference_answer=REFERENCE,
        )
    )

    (slowest,) = teachers[2].proposals_calls()
    assert slowest.ended is not None
    [(sent, questions)] = meta.batches
    assert sent >= slowest.ended
    assert sorted(prefix.split("### Step 1.")[1][:3] for prefix, _ in questions) == [
        " a ",
        " b ",
        " c ",
    ]
    (timing,) = result.rounds
    assert timing.propose_s >= slow and timing.score_s >= 0.0
    assert timing.critical_s == pytest.approx(timing.propose_s + timing.score_s)


# --- cancellation ------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", ["propose", "score", "answer"])
async def test_cancel_stops_every_in_flight_call(phase: str) -> None:
    meter = ConcurrencyMeter()
    hang = 30.0

    def propose_delay(prefix: str) -> float:
        if phase == "propose":
            return hang
        if phase == "answer":
            # The answer of the beam that finished at step 1 and the step-2 proposals hang.
            return hang if is_answer_prefix(prefix) or prefix.endswith("### Step 2.") else 0.0
        return 0.0

    def script(name: str) -> Script:
        def propose(prefix: str) -> str | Proposal:
            if is_answer_prefix(prefix):
                return "42"
            if phase == "answer" and name == "a":
                return closing(" a is done.")
            return f" {name} step."

        return propose

    teachers = [
        ScriptedFakeTeacher(
            name,
            proposals=script(name),
            logprobs=[-0.5] if name != "a" else [-0.1],
            propose_delay=propose_delay,
            score_delay=hang if phase == "score" else 0.0,
            meter=meter,
        )
        for name in "abc"
    ]

    task = asyncio.create_task(
        decode(
            DecodeJob.create("q", teachers, DecodeOptions(beam_width=2), reference_answer=REFERENCE)
        )
    )
    expected = {
        "propose": lambda: meter.by_kind["propose"] == 3,
        "score": lambda: meter.by_kind["score"] == 9,  # 3 candidates x 3 scorers
        # 1 answer + 1 live beam x 3 teachers
        "answer": lambda: meter.by_kind["propose"] == 4,
    }[phase]
    await wait_until(expected)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert meter.in_flight == 0
    assert [t.in_flight for t in teachers] == [0, 0, 0]
    hung = [c for t in teachers for c in t.calls if c.outcome != "ok"]
    assert hung
    assert {c.outcome for c in hung} == {"cancelled"}
    assert pending_tasks() == []


# --- failures ------------------------------------------------------------------------------------


async def test_failing_proposer_is_dropped_for_that_step_only() -> None:
    def script(name: str) -> Script:
        def propose(prefix: str) -> str | Proposal | BaseException:
            if is_answer_prefix(prefix):
                return "42"
            if name == "b" and prefix.endswith("### Step 2."):
                return down("b")
            return f" {name} {digest(prefix)}."

        return propose

    teachers = [
        ScriptedFakeTeacher(n, proposals=script(n), logprobs=hashed_logprobs(n)) for n in "abc"
    ]

    result = await decode(
        DecodeJob.create(
            "q",
            teachers,
            DecodeOptions(beam_width=1, max_steps=3, include_candidates=True),
            reference_answer=REFERENCE,
        )
    )

    assert [f.model_dump() for f in result.failures] == [
        {
            "step": 2,
            "teacher": "b",
            "role": "propose",
            "error": "teacher 'b': connection refused",
            "code": "teacher_unreachable",
        }
    ]
    per_step = [
        sorted(p for c in (s.candidates or []) for p in c.proposers) for s in result.best.steps
    ]
    assert per_step == [["a", "b", "c"], ["a", "c"], ["a", "b", "c"]]
    usage = {u.name: u for u in result.teachers}
    assert usage["b"].failures == 1
    assert result.dropped == []
    assert usage["a"].failures == usage["c"].failures == 0


async def test_failing_scorer_is_dropped_from_that_steps_scores() -> None:
    def failing(prefix: str, target: str) -> list[float]:
        if "### Step 2." in prefix:
            raise down("s2")
        return hashed_logprobs("s2")(prefix, target)

    writer = ScriptedFakeTeacher(
        "writer",
        proposals=lambda p: (
            "42"
            if is_answer_prefix(p)
            else (" first." if p.endswith("### Step 1.") else closing(" second."))
        ),
        can_score=False,
    )
    s1 = ScriptedFakeTeacher("s1", logprobs=hashed_logprobs("s1"), can_propose=False)
    s2 = ScriptedFakeTeacher("s2", logprobs=failing, can_propose=False)

    result = await decode(
        DecodeJob.create(
            "q", [writer, s1, s2], DecodeOptions(beam_width=1), reference_answer=REFERENCE
        )
    )

    first, second = result.best.steps
    assert [p.scorer for p in first.scorers] == ["s1", "s2"]
    assert [p.scorer for p in second.scorers] == ["s1"]
    context = "<think>\n### Step 1. first.\n\n### Step 2. second." + ANSWER_PROMPT
    assert second.log_score == pytest.approx(
        hand_mean(s1.logprobs_for(context, REFERENCE)), abs=TOL
    )
    assert [(f.step, f.teacher, f.role, f.error) for f in result.failures] == [
        (2, "s2", "score", "teacher 's2': connection refused")
    ]


async def test_decode_raises_when_every_proposer_fails_a_step() -> None:
    def script(prefix: str) -> str | BaseException:
        if is_answer_prefix(prefix):
            return "42"
        return down("a") if prefix.endswith("### Step 2.") else " a step."

    a = ScriptedFakeTeacher("a", proposals=script, logprobs=[-0.5])

    with pytest.raises(DecodeError, match=r"step 2: no candidate survived .*connection refused"):
        await decode(
            DecodeJob.create("q", [a], DecodeOptions(beam_width=1), reference_answer=REFERENCE)
        )

    assert a.in_flight == 0
    assert pending_tasks() == []


async def test_decode_raises_when_the_only_scorer_fails() -> None:
    writer = ScriptedFakeTeacher(
        "writer", proposals=lambda p: "42" if is_answer_prefix(p) else " step.", can_score=False
    )

    def failing(prefix: str, target: str) -> list[float]:
        raise down("meta")

    meta = ScriptedFakeTeacher("meta", logprobs=failing, can_propose=False)

    with pytest.raises(DecodeError, match="step 1: no candidate survived"):
        await decode(
            DecodeJob.create(
                "q", [writer, meta], DecodeOptions(beam_width=2), reference_answer=REFERENCE
            )
        )


async def test_a_later_failed_step_keeps_the_finished_traces() -> None:
    """B = 2: a's beam finishes at step 1, every step-2 proposal fails: a's trace is returned."""

    def script(name: str) -> Script:
        def propose(prefix: str) -> str | Proposal | BaseException:
            if is_answer_prefix(prefix):
                return "42"
            if prefix.endswith("### Step 2."):
                return down(name)
            return closing(" a is done.") if name == "a" else f" {name} goes on."

        return propose

    teachers = [
        ScriptedFakeTeacher(n, proposals=script(n), logprobs=[-0.1] if n == "a" else [-0.5])
        for n in "ab"
    ]

    result = await asyncio.wait_for(
        decode(
            DecodeJob.create("q", teachers, DecodeOptions(beam_width=2), reference_answer=REFERENCE)
        ),
        5.0,
    )

    assert [t.in_flight for t in teachers] == [0, 0]
    assert len(result.traces) == 1
    assert result.best.steps[-1].proposers == ["a"] and result.best.answer == "42"
    assert {f.step for f in result.failures} == {2}
