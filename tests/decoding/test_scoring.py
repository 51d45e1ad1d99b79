"""The score (docs/method.md, Eq. 3 and step mode): pure functions and through `decode`.

The decode tests compute every expected score by hand from the fakes' scripted
log-probabilities and compare to 1e-9.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cord_proxy.decoding import DecodeJob, DecodeOptions, decode
from cord_proxy.decoding.scorers import ScorerModel, scorer_models, step_readers
from cord_proxy.decoding.scoring import (
    as_probability,
    mean_logprob,
    normalised_logprob,
    per_byte_logprob,
    weighted_mean,
)
from cord_proxy.teachers.base import Proposal
from tests.support.fakes import ScriptedFakeTeacher, hashed_logprobs, is_answer_prefix

ANSWER_PROMPT = "</think> The final answer is "
TOL = 1e-9


def hand_mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def close_step(text: str, tokens: int | None = None) -> Proposal:
    """A step that ends the thinking block (the teacher stopped at ``</think>``)."""
    return Proposal(text, "stop", tokens or len(text.split()), stop_string="</think>")


# --- pure functions -------------------------------------------------------------------------


def test_mean_logprob_is_the_per_token_mean() -> None:
    assert mean_logprob([-0.5, -1.0, -1.5]) == -1.0
    assert mean_logprob([-2.0]) == -2.0


def test_mean_logprob_of_an_empty_span_is_an_error() -> None:
    with pytest.raises(ValueError):
        mean_logprob([])


def test_per_byte_logprob_divides_the_total_by_utf8_bytes() -> None:
    # "é" is two bytes, so "aé" is three.
    assert per_byte_logprob([-1.5, -3.0], "aé") == pytest.approx(-1.5, abs=1e-15)
    with pytest.raises(ValueError):
        per_byte_logprob([-1.0], "")


def test_normalised_logprob_dispatches_on_the_normalisation() -> None:
    assert normalised_logprob([-1.0, -3.0], "abcd", "token") == -2.0
    assert normalised_logprob([-1.0, -3.0], "abcd", "byte") == -1.0


def test_weighted_mean_weights_the_parts() -> None:
    assert weighted_mean([-1.0, -2.0], [1.0, 3.0]) == -1.75
    assert weighted_mean([-1.0, -2.0], [1.0, 1.0]) == -1.5
    with pytest.raises(ValueError):
        weighted_mean([], [])


def test_as_probability_is_exp() -> None:
    assert as_probability(0.0) == 1.0
    assert as_probability(-1.0) == pytest.approx(math.exp(-1.0), rel=1e-15)
    assert as_probability(float("-inf")) == 0.0


def models(*identities: str) -> list[ScorerModel]:
    teachers = [ScriptedFakeTeacher(i, logprobs=[-1.0], score_identity=i) for i in identities]
    return scorer_models(teachers, {})


def names(readers: tuple[list[ScorerModel], bool]) -> tuple[list[str], bool]:
    return [m.name for m in readers[0]], readers[1]


def test_step_readers_leave_out_the_proposers_models() -> None:
    assert names(step_readers(models("a", "b", "c"), {"a"})) == (["b", "c"], False)
    assert names(step_readers(models("a", "b", "c"), {"a", "c"})) == (["b"], False)


def test_a_lone_model_reads_its_own_step_and_says_so() -> None:
    assert names(step_readers(models("a"), {"a"})) == (["a"], True)
    assert names(step_readers(models("a", "b"), {"a", "b"})) == (["a", "b"], True)


def test_teachers_of_one_model_are_one_scorer_with_their_mean_weight() -> None:
    teachers = [
        ScriptedFakeTeacher(name, logprobs=[-1.0], score_identity=identity)
        for name, identity in (("m1", "m"), ("n", "n"), ("m2", "m"))
    ]
    grouped = scorer_models(teachers, {"m1": 1.0, "m2": 3.0})
    assert [(m.name, m.names, m.weight) for m in grouped] == [
        ("m1", ("m1", "m2"), 2.0),
        ("n", ("n",), 1.0),
    ]


logprob_lists = st.lists(
    st.floats(min_value=-50.0, max_value=0.0, allow_nan=False), min_size=1, max_size=20
)


@given(logprob_lists)
def test_score_is_a_probability(values: list[float]) -> None:
    score = as_probability(mean_logprob(values))
    assert 0.0 <= score <= 1.0
    assert mean_logprob(values) == pytest.approx(hand_mean(values), abs=1e-9)


@given(
    st.lists(
        st.tuples(
            st.floats(min_value=-50.0, max_value=0.0, allow_nan=False),
            st.floats(min_value=0.01, max_value=10.0),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_weighted_mean_matches_the_hand_formula(parts: list[tuple[float, float]]) -> None:
    values = [v for v, _ in parts]
    weights = [w for _, w in parts]
    expected = math.fsum(v * w for v, w in parts) / math.fsum(weights)
    assert weighted_mean(values, weights) == pytest.approx(expected, abs=1e-9)
    assert min(values) - 1e-9 <= weighted_mean(values, weights) <= max(values) + 1e-9


# --- reference mode through decode ------------------------------------------------------------


async def test_reference_mode_score_equals_the_hand_computation() -> None:
    """Weighted mean over scorers of the mean log-prob of the reference after prefix+step+prompt."""
    reference = "5"

    def proposals(prefix: str) -> str | Proposal:
        if is_answer_prefix(prefix):
            return "5"
        if prefix.endswith("### Step 1."):
            return " Add 2 and 3."
        return close_step(" The sum is 5.")

    writer = ScriptedFakeTeacher("writer", proposals=proposals, can_score=False)
    s1 = ScriptedFakeTeacher("s1", logprobs=hashed_logprobs("s1"), can_propose=False)
    s2 = ScriptedFakeTeacher("s2", logprobs=hashed_logprobs("s2"), can_propose=False)
    weights = {"s1": 2.0, "s2": 0.5}

    result = await decode(
        DecodeJob.create(
            "What is 2 + 3?",
            [writer, s1, s2],
            DecodeOptions(beam_width=1),
            reference_answer=reference,
            scorer_weights=weights,
        )
    )

    contexts = [
        "<think>\n### Step 1. Add 2 and 3." + ANSWER_PROMPT,
        "<think>\n### Step 1. Add 2 and 3.\n\n### Step 2. The sum is 5." + ANSWER_PROMPT,
    ]
    # Each scorer read exactly these contexts, with the reference answer as the target.
    for scorer in (s1, s2):
        assert [(c.prefix, c.target) for c in scorer.score_calls()] == [
            (ctx, reference) for ctx in contexts
        ]
    assert writer.score_calls() == []

    trace = result.best
    assert result.score_mode == "reference"
    assert result.reference_used is True
    assert len(trace.steps) == 2
    for step, ctx in zip(trace.steps, contexts, strict=True):
        m1 = hand_mean(s1.logprobs_for(ctx, reference))
        m2 = hand_mean(s2.logprobs_for(ctx, reference))
        expected = (2.0 * m1 + 0.5 * m2) / 2.5
        assert step.log_score == pytest.approx(expected, abs=TOL)
        assert step.score == pytest.approx(math.exp(step.log_score), rel=1e-12, abs=0.0)
        assert [(p.scorer, p.weight, p.tokens) for p in step.scorers] == [
            ("s1", 2.0, len(s1.logprobs_for(ctx, reference))),
            ("s2", 0.5, len(s2.logprobs_for(ctx, reference))),
        ]
        assert step.scorers[0].mean_logprob == pytest.approx(m1, abs=TOL)
        assert step.scorers[1].mean_logprob == pytest.approx(m2, abs=TOL)
    # The trace's score is the predictive score of its whole thinking (its last step).
    assert trace.log_score == pytest.approx(trace.steps[-1].log_score, abs=TOL)
    assert trace.score == pytest.approx(math.exp(trace.log_score), rel=1e-12, abs=0.0)
    assert trace.answer == "5"


async def test_reference_mode_with_one_scorer_is_the_papers_geometric_mean() -> None:
    writer = ScriptedFakeTeacher(
        "writer",
        proposals=lambda p: "5" if is_answer_prefix(p) else close_step(" 2 + 3 = 5."),
        can_score=False,
    )
    scorer = ScriptedFakeTeacher("meta", logprobs=[-0.2, -0.4, -0.9], can_propose=False)

    result = await decode(
        DecodeJob.create(
            "2+3?", [writer, scorer], DecodeOptions(beam_width=1), reference_answer="5"
        )
    )

    step = result.best.steps[0]
    assert step.log_score == pytest.approx(-0.5, abs=TOL)
    assert step.score == pytest.approx(math.exp(-0.5), rel=1e-12, abs=0.0)
    assert result.best.closed_by == "think"


# --- step mode through decode -----------------------------------------------------------------


async def test_step_mode_score_is_the_mean_over_the_other_teachers() -> None:
    bodies = {"a": " alpha step.", "b": " beta step.", "c": " gamma step."}
    teachers = [
        ScriptedFakeTeacher(
            name,
            proposals=lambda p, name=name: "done" if is_answer_prefix(p) else bodies[name],
            logprobs=hashed_logprobs(name),
        )
        for name in bodies
    ]
    by_name = {t.name: t for t in teachers}

    result = await decode(
        DecodeJob.create(
            "q", teachers, DecodeOptions(beam_width=3, max_steps=1, include_candidates=True)
        )
    )

    assert result.score_mode == "step"
    assert result.reference_used is False
    prefix = "<think>\n### Step 1."
    records = result.best.steps[0].candidates
    assert records is not None
    assert sorted(r.text for r in records) == sorted(f"### Step 1.{b}" for b in bodies.values())
    raw = {
        (o, p): hand_mean(by_name[o].logprobs_for(prefix, bodies[p]))
        for o in bodies
        for p in bodies
        if o != p
    }
    # Each reader's readings are centred on its mean over the round (docs/method.md,
    # "Fair ranking"); the score is the mean of the centred readings of the other teachers.
    means = {o: hand_mean([v for (r, _), v in raw.items() if r == o]) for o in bodies}
    for record in records:
        (proposer,) = record.proposers
        others = [n for n in bodies if n != proposer]
        centred = [raw[(o, proposer)] - means[o] for o in others]
        assert record.log_score == pytest.approx(hand_mean(centred), abs=TOL)
        assert record.score == pytest.approx(math.exp(record.log_score), rel=1e-12, abs=0.0)
        assert [p.scorer for p in record.scorers] == others
        assert [p.mean_logprob for p in record.scorers] == pytest.approx(
            [raw[(o, proposer)] for o in others], abs=TOL
        )
        assert [p.centred for p in record.scorers] == pytest.approx(centred, abs=TOL)
        assert record.self_scored is False
    # No teacher scored its own step, and every score call read the step after the prefix.
    for teacher in teachers:
        calls = teacher.score_calls()
        assert sorted(str(c.target) for c in calls) == sorted(
            b for n, b in bodies.items() if n != teacher.name
        )
        assert {c.prefix for c in calls} == {prefix}
    # Every trace's score is its step's score.
    for trace in result.traces:
        assert trace.log_score == pytest.approx(trace.steps[-1].log_score, abs=TOL)


async def test_step_mode_lone_teacher_scores_its_own_steps() -> None:
    def proposals(prefix: str) -> str | Proposal:
        if is_answer_prefix(prefix):
            return "answer"
        return " first thought." if prefix.endswith("### Step 1.") else close_step(" second.")

    lone = ScriptedFakeTeacher("lone", proposals=proposals, logprobs=hashed_logprobs("lone"))

    result = await decode(DecodeJob.create("q", [lone], DecodeOptions(beam_width=1)))

    expected_calls = [
        ("<think>\n### Step 1.", " first thought."),
        ("<think>\n### Step 1. first thought.\n\n### Step 2.", " second."),
    ]
    assert [(c.prefix, c.target) for c in lone.score_calls()] == expected_calls
    for step, (prefix, body) in zip(result.best.steps, expected_calls, strict=True):
        (part,) = step.scorers
        assert part.scorer == "lone" and step.self_scored is True
        assert part.mean_logprob == pytest.approx(hand_mean(lone.logprobs_for(prefix, body)))
        # The only candidate of its round: centred on itself, its score is 0 (a ratio of 1).
        assert (part.centred, step.log_score, step.score) == (0.0, 0.0, 1.0)


async def test_step_mode_byte_normalisation_divides_by_the_steps_bytes() -> None:
    body = " café au lait"  # 14 UTF-8 bytes
    writer = ScriptedFakeTeacher(
        "writer", proposals=lambda p: "x" if is_answer_prefix(p) else close_step(body)
    )
    reader = ScriptedFakeTeacher("reader", logprobs=[-1.0, -2.5, -0.5], can_propose=False)

    result = await decode(
        DecodeJob.create(
            "q", [writer, reader], DecodeOptions(beam_width=1, score_normalisation="byte")
        )
    )

    assert len(body.encode("utf-8")) == 14
    (part,) = result.best.steps[0].scorers
    assert part.mean_logprob == pytest.approx(-4.0 / 14, abs=TOL)


async def test_step_mode_scores_an_empty_closing_step_as_the_think_close() -> None:
    writer = ScriptedFakeTeacher(
        "writer",
        proposals=lambda p: "x" if is_answer_prefix(p) else Proposal("", "stop", 1, "</think>"),
    )
    reader = ScriptedFakeTeacher("reader", logprobs=[-0.25], can_propose=False)

    result = await decode(DecodeJob.create("q", [writer, reader], DecodeOptions(beam_width=1)))

    # The step adds no marker to the trace, so the reader reads the close after the trace.
    assert [(c.prefix, c.target) for c in reader.score_calls()] == [("<think>\n", "</think>")]
    (part,) = result.best.steps[0].scorers
    assert part.mean_logprob == pytest.approx(-0.25, abs=TOL)
    assert result.best.closed_by == "think"
    assert "### Step" not in result.best.reasoning


async def test_step_mode_merged_candidate_is_not_scored_by_any_of_its_proposers() -> None:
    bodies = {"a": " same.", "b": " same.", "c": " other."}
    teachers = [
        ScriptedFakeTeacher(
            name,
            proposals=lambda p, name=name: "x" if is_answer_prefix(p) else bodies[name],
            logprobs=hashed_logprobs(name),
            propose_delay=0.05 if name == "b" else 0.0,  # b's copy is merged into a's
        )
        for name in bodies
    ]

    result = await decode(
        DecodeJob.create(
            "q", teachers, DecodeOptions(beam_width=2, max_steps=1, include_candidates=True)
        )
    )

    records = result.best.steps[0].candidates
    assert records is not None
    (merged,) = [r for r in records if len(r.proposers) == 2]
    assert merged.proposers == ["a", "b"]
    assert [p.scorer for p in merged.scorers] == ["c"]
    c = teachers[2]
    expected = hand_mean(c.logprobs_for("<think>\n### Step 1.", " same."))
    assert merged.scorers[0].mean_logprob == pytest.approx(expected, abs=TOL)
    # c read nothing else this round: centred on itself.
    assert (merged.scorers[0].centred, merged.log_score) == (0.0, 0.0)
