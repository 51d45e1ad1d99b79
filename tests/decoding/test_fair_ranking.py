"""Issue 19: the engine returns the best trace it found, and ranks every candidate on equal terms.

One regression test (or a few) per finding, against in-process scripted fake teachers and the
engine's public door only (`decode(job)` and the records of `cord_proxy.decoding.trace`):

1. every finished trace whose answer was written is in `result.traces`, once, best first,
   even when Python reuses a freed beam's `id` (run 200 times in one process);
2. `best` is the best of every finished trace, not the best survivor;
3. step mode: a scorer's overall level does not change the round's ranking (per-scorer
   centring), a step is never read by its own proposer's model when another model can read
   it, and the same step text gets the same score whoever proposed it, seeded or not;
4. a finished trace competing in a later round is judged by that round's scorers;
5. teachers of one scorer model are one scorer: one part, one vote, their mean weight;
8. no dangling step marker, scorer weights validated when the job is made, an empty
   proposal recorded, and the thinking budget counted over the whole thinking text.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pytest

from cord_proxy.decoding import DecodeJob, DecodeOptions, decode
from cord_proxy.decoding.trace import CandidateRecord, DecodeResult, FinishedTrace
from cord_proxy.errors import InvalidRequestError, TeacherUnreachableError
from cord_proxy.teachers.base import Proposal
from tests.support.fakes import (
    ScriptedFakeTeacher,
    answered,
    digest,
    is_answer_prefix,
    round_records,
)

REFERENCE = "42"
TOL = 1e-9
RUNS = 200

Script = Callable[[str], str | Proposal | BaseException]


def closing(text: str, tokens: int | None = None) -> Proposal:
    """A step that ends the thinking block (the teacher stopped at ``</think>``)."""
    count = len(text.split()) if tokens is None else tokens
    return Proposal(text, "stop", count, stop_string="</think>")


def down(name: str) -> TeacherUnreachableError:
    return TeacherUnreachableError(name, "connection refused")


def step_of(prefix: str) -> int:
    """The number of the step a proposal prefix asks for (or the answer prefix closes)."""
    return prefix.count("### Step")


def answer_text(name: str, prefix: str) -> str:
    """Every answer is different, so a trace is found by its answer."""
    return f"{name} answers {digest(prefix)}"


def lost_answers(result: DecodeResult, teachers: Sequence[ScriptedFakeTeacher]) -> list[str]:
    """Answers written but not in `result.traces` exactly once."""
    given = [t.answer for t in result.traces]
    return [a for a in answered(teachers) if given.count(a) != 1]


def assert_best_first(result: DecodeResult) -> None:
    scores = [t.log_score for t in result.traces]
    assert scores == sorted(scores, reverse=True), scores
    assert result.best is result.traces[0]
    assert result.best.log_score == max(scores)


# --- finding 1: answered traces vanish --------------------------------------------------------
#
# B = 2. Step 1: x closes early ("x is done.", -0.5), p and q go on (-0.9, -0.95). Step 2:
# the six children of p's and q's beams score about -0.2 and push x's finished trace out of
# the top 2. Step 3: every child closes, lower than step 2 (about -0.4). x's trace was answered
# at step 1 and nothing holds its beam any more; the step-3 beams are new objects, and Python
# may give one of them the freed beam's `id`.


def early_close_team(
    final_score: float, final_answers_fail: bool = False
) -> list[ScriptedFakeTeacher]:
    def script(name: str) -> Script:
        def propose(prefix: str) -> str | Proposal | BaseException:
            step = step_of(prefix)
            if is_answer_prefix(prefix):
                if final_answers_fail and step == 3:
                    return down(name)
                return answer_text(name, prefix)
            if step == 1:
                return closing(" x is done.") if name == "x" else f" {name} starts."
            if step == 2:
                return f" {name} goes on."
            return closing(f" {name} ends.")

        return propose

    def judge(prefix: str, target: str) -> list[float]:
        last = prefix[prefix.rindex("### Step") :]
        step = step_of(prefix)
        if step == 1:
            return [-0.5] if "x is done." in last else [-0.9 if " p " in last else -0.95]
        rank = "xpq".index(last.split()[3][0])  # who wrote the last step
        if step == 2:
            return [-0.2 - 0.01 * rank - (0.03 if " p starts." in prefix else 0.0)]
        return [final_score - 0.01 * rank - (0.03 if " p goes on." in prefix else 0.0)]

    proposers = [ScriptedFakeTeacher(n, proposals=script(n), can_score=False) for n in "xpq"]
    judge_teacher = ScriptedFakeTeacher("judge", logprobs=judge, can_propose=False)
    return [*proposers, judge_teacher]


def early_close_job(team: list[ScriptedFakeTeacher]) -> DecodeJob:
    return DecodeJob.create(
        "q", team, DecodeOptions(beam_width=2, max_steps=3), reference_answer=REFERENCE
    )


def early_trace(result: DecodeResult) -> list[FinishedTrace]:
    return [t for t in result.traces if t.reasoning == "### Step 1. x is done."]


async def test_an_answered_trace_is_never_lost() -> None:
    """200 decodes in one process: the early trace and every other answered trace stay."""
    losses: list[tuple[int, list[str]]] = []
    for run in range(RUNS):
        team = early_close_team(final_score=-0.4)
        result = await decode(early_close_job(team))
        lost = lost_answers(result, team)
        if lost or len(early_trace(result)) != 1:
            losses.append((run, lost))
            continue
        # Nothing but the answered traces, each once, best first (here: survivors first too).
        assert len(result.traces) == len(answered(team)) == 3
        assert len({t.reasoning for t in result.traces}) == len(result.traces)
        assert_best_first(result)
        assert result.traces[-1].reasoning == "### Step 1. x is done."
    assert losses == [], f"{len(losses)} of {RUNS} decodes lost an answered trace: {losses[:5]}"


async def test_survivors_that_cannot_answer_leave_the_earlier_answered_trace() -> None:
    """Every step-3 answer call fails: the decode returns the early trace, in 200 of 200 runs."""
    outcomes: list[str] = []
    for _ in range(RUNS):
        team = early_close_team(final_score=-0.4, final_answers_fail=True)
        try:
            result = await decode(early_close_job(team))
        except Exception as error:  # the finding: this raised
            outcomes.append(f"raised {type(error).__name__}: {error}")
            continue
        if [t.reasoning for t in result.traces] != ["### Step 1. x is done."]:
            outcomes.append(f"returned {[t.reasoning for t in result.traces]}")
            continue
        assert result.best.answer == answered(team)[0]
        assert {f.role for f in result.failures} == {"answer"}
    assert outcomes == [], f"{len(outcomes)} of {RUNS} decodes went wrong: {outcomes[:3]}"


# --- finding 2: `best` is not the best ----------------------------------------------------------


async def test_a_trace_pushed_out_earlier_that_scores_highest_is_best() -> None:
    """Reference mode: x's trace (-0.5) was pushed out at step 2; every step-3 finish is -3.0."""
    team = early_close_team(final_score=-3.0)
    result = await decode(early_close_job(team))

    assert result.best.reasoning == "### Step 1. x is done."
    assert result.best.log_score == pytest.approx(-0.5, abs=TOL)
    assert_best_first(result)
    assert len(result.traces) == 3
    assert all(t.log_score < -2.9 for t in result.traces[1:])


# --- finding 3: a scorer's scale changes who wins (step mode) ----------------------------------
#
# Local scorers a and b, a hosted proposer h. a's step is read by b only, b's by a only, h's by
# both. a reads b's step at -3.5 and h's at -3.2; b reads a's at -1.0 and h's at -1.5. Centred
# on each scorer's round mean (a: -3.35, b: -1.25): a's step 0.25, b's step -0.15, h's step
# (0.15 - 0.25) / 2 = -0.05. Ranking [a, h, b], whatever constant is added to a's readings.

A_READS = {" b step.": [-3.0, -4.0], " h step.": [-3.2]}
B_READS = {" a step.": [-1.0], " h step.": [-1.5, -1.5]}


def reader(reads: dict[str, list[float]], shift: float = 0.0) -> Callable[[str, str], list[float]]:
    def logprobs(prefix: str, target: str) -> list[float]:
        # A reading of the scorer's own step is scripted too (at the top), so that a
        # self-read is seen in the ranking rather than as a crash.
        return [v + shift for v in reads.get(target, [-0.01])]

    return logprobs


def three_way_team(
    shift: float, delays: dict[str, float] | None = None
) -> list[ScriptedFakeTeacher]:
    delays = delays or {}

    def script(name: str) -> Script:
        return lambda p: answer_text(name, p) if is_answer_prefix(p) else f" {name} step."

    def delay(name: str) -> Callable[[str], float]:
        return lambda p: 0.0 if is_answer_prefix(p) else delays.get(name, 0.0)

    a = ScriptedFakeTeacher(
        "a", proposals=script("a"), logprobs=reader(A_READS, shift), propose_delay=delay("a")
    )
    b = ScriptedFakeTeacher(
        "b", proposals=script("b"), logprobs=reader(B_READS), propose_delay=delay("b")
    )
    h = ScriptedFakeTeacher("h", proposals=script("h"), can_score=False, propose_delay=delay("h"))
    return [a, b, h]


def by_text(records: Sequence[CandidateRecord]) -> dict[str, CandidateRecord]:
    return {r.text: r for r in records}


async def three_way_round(
    shift: float, seed: int | None = None, delays: dict[str, float] | None = None
) -> tuple[list[ScriptedFakeTeacher], DecodeResult, list[CandidateRecord]]:
    team = three_way_team(shift, delays)
    result = await decode(
        DecodeJob.create(
            "q",
            team,
            DecodeOptions(beam_width=1, max_steps=1, include_candidates=True, seed=seed),
        )
    )
    assert result.score_mode == "step"
    records = result.best.steps[0].candidates
    assert records is not None
    return team, result, records


def ranking(records: Sequence[CandidateRecord]) -> list[str]:
    scored = [r for r in records if r.log_score is not None]
    return [r.text for r in sorted(scored, key=lambda r: -(r.log_score or 0.0))]


@pytest.mark.parametrize("shift", [3.0, -3.0, 10.0])
async def test_a_constant_added_to_one_scorer_does_not_change_the_ranking(shift: float) -> None:
    _, base, base_records = await three_way_round(0.0)
    _, moved, moved_records = await three_way_round(shift)

    expected = ["### Step 1. a step.", "### Step 1. h step.", "### Step 1. b step."]
    assert ranking(base_records) == expected
    assert ranking(moved_records) == expected
    assert [(r.text, r.selected) for r in moved_records] == [
        (r.text, r.selected) for r in base_records
    ]
    assert moved.best.reasoning == base.best.reasoning == "### Step 1. a step."
    for records in (base_records, moved_records):
        scores = {text: r.log_score for text, r in by_text(records).items()}
        assert scores["### Step 1. a step."] == pytest.approx(0.25, abs=TOL)
        assert scores["### Step 1. b step."] == pytest.approx(-0.15, abs=TOL)
        assert scores["### Step 1. h step."] == pytest.approx(-0.05, abs=TOL)


async def test_a_step_score_is_the_mean_of_its_readers_centred_readings() -> None:
    """Each part keeps the scorer's raw reading and gains its centred reading."""
    shift = 3.0
    _, _, records = await three_way_round(shift)
    rows = by_text(records)

    def parts(text: str) -> dict[str, tuple[float, float | None]]:
        return {p.scorer: (p.mean_logprob, p.centred) for p in rows[text].scorers}

    a_mean = (-3.5 + -3.2) / 2 + shift
    b_mean = (-1.0 + -1.5) / 2
    assert parts("### Step 1. a step.") == {"b": pytest.approx((-1.0, -1.0 - b_mean), abs=TOL)}
    assert parts("### Step 1. b step.") == {
        "a": pytest.approx((-3.5 + shift, -3.5 + shift - a_mean), abs=TOL)
    }
    assert parts("### Step 1. h step.") == {
        "a": pytest.approx((-3.2 + shift, -3.2 + shift - a_mean), abs=TOL),
        "b": pytest.approx((-1.5, -1.5 - b_mean), abs=TOL),
    }
    for record in records:
        centred = [p.centred for p in record.scorers if p.centred is not None]
        assert len(centred) == len(record.scorers)
        weights = [p.weight for p in record.scorers]
        assert record.log_score is not None
        assert record.log_score == pytest.approx(
            math.fsum(c * w for c, w in zip(centred, weights, strict=True)) / math.fsum(weights),
            abs=TOL,
        )
        assert record.self_scored is False


async def test_no_scorer_reads_its_own_models_step_when_another_can() -> None:
    team, result, records = await three_way_round(0.0)
    a, b, _ = team
    assert {c.target for c in a.score_calls()} == {" b step.", " h step."}
    assert {c.target for c in b.score_calls()} == {" a step.", " h step."}
    for record in records:
        assert not {p.scorer for p in record.scorers} & set(record.proposers)
    assert result.best.steps[0].self_scored is False


# The same text " same step." written by a and b (h writes " h step."). a reads it at -1.0
# and h's at -2.0; b reads it at -2.5 and h's at -0.5. No third model can read it.

SAME_A = {" same step.": [-1.0], " h step.": [-2.0]}
SAME_B = {" same step.": [-2.5], " h step.": [-0.5]}


def same_text_team(delays: dict[str, float]) -> list[ScriptedFakeTeacher]:
    def script(name: str) -> Script:
        body = " h step." if name == "h" else " same step."
        return lambda p: answer_text(name, p) if is_answer_prefix(p) else body

    def delay(name: str) -> Callable[[str], float]:
        return lambda p: 0.0 if is_answer_prefix(p) else delays.get(name, 0.0)

    return [
        ScriptedFakeTeacher(
            "a", proposals=script("a"), logprobs=reader(SAME_A), propose_delay=delay("a")
        ),
        ScriptedFakeTeacher(
            "b", proposals=script("b"), logprobs=reader(SAME_B), propose_delay=delay("b")
        ),
        ScriptedFakeTeacher("h", proposals=script("h"), can_score=False, propose_delay=delay("h")),
    ]


ARRIVALS = {
    "a first": {"b": 0.03, "h": 0.06},
    "b first": {"a": 0.03, "h": 0.06},
    "h first": {"a": 0.06, "b": 0.03},
    "h between": {"b": 0.06, "h": 0.03},
}


async def test_the_same_text_gets_the_same_score_whoever_proposed_it_seeded_or_not() -> None:
    scores: dict[str, tuple[float | None, float | None]] = {}
    for seed in (None, 11):
        for order, delays in ARRIVALS.items():
            result = await decode(
                DecodeJob.create(
                    "q",
                    same_text_team(delays),
                    DecodeOptions(beam_width=2, max_steps=1, include_candidates=True, seed=seed),
                )
            )
            records = result.best.steps[0].candidates
            assert records is not None
            rows = by_text(records)
            assert set(rows) == {"### Step 1. same step.", "### Step 1. h step."}
            assert sorted(rows["### Step 1. same step."].proposers) == ["a", "b"]
            scores[f"seed={seed}, {order}"] = (
                rows["### Step 1. same step."].log_score,
                rows["### Step 1. h step."].log_score,
            )
    first = next(iter(scores.values()))
    assert first[0] is not None and first[1] is not None
    for label, pair in scores.items():
        assert pair == pytest.approx(first, abs=TOL), (label, scores)


async def test_a_step_read_only_by_its_own_proposers_model_is_marked_self_scored() -> None:
    """One local model l beside hosted proposers: l's step can only be read by l."""

    def script(name: str) -> Script:
        return lambda p: answer_text(name, p) if is_answer_prefix(p) else f" {name} step."

    reads = {" l step.": [-0.3], " h1 step.": [-0.6], " h2 step.": [-0.9]}
    local = ScriptedFakeTeacher(
        "l", proposals=script("l"), logprobs=lambda prefix, target: reads[target]
    )
    hosted = [ScriptedFakeTeacher(n, proposals=script(n), can_score=False) for n in ("h1", "h2")]
    result = await decode(
        DecodeJob.create(
            "q",
            [local, *hosted],
            DecodeOptions(beam_width=3, max_steps=1, include_candidates=True),
        )
    )

    records = result.best.steps[0].candidates
    assert records is not None
    assert {r.text: r.self_scored for r in records} == {
        "### Step 1. l step.": True,
        "### Step 1. h1 step.": False,
        "### Step 1. h2 step.": False,
    }
    assert len(result.traces) == 3
    for trace in result.traces:
        (step,) = trace.steps
        assert step.self_scored is (step.proposers == ["l"])


# --- finding 4: finished traces keep a score from another scorer set ---------------------------
#
# Reference mode, B = 2, scorers s1 and s2, hosted proposers u and v. Step 1: u closes
# (s1 -1.0, s2 -0.2: -0.6 on both), v goes on (-0.9). Step 2: s2 fails on every candidate, so
# the round is ranked by s1 alone: v's beam's children read -0.7 (u's) and -0.8 (v's). On s1,
# the round's judge, u's finished trace reads -1.0 and loses its slot to both children; on
# the score it kept from both scorers (-0.6) it would push the -0.8 child out.


async def test_a_finished_trace_is_compared_on_the_rounds_scorers() -> None:
    def script(name: str) -> Script:
        def propose(prefix: str) -> str | Proposal:
            if is_answer_prefix(prefix):
                return answer_text(name, prefix)
            if step_of(prefix) == 1:
                return closing(" u is done.") if name == "u" else " v goes on."
            return f" {name} follows."

        return propose

    def s1(prefix: str, target: str) -> list[float]:
        if "u is done." in prefix:
            return [-1.0]
        if "### Step 2." not in prefix:
            return [-0.9]
        return [-0.7] if "u follows." in prefix else [-0.8]

    def s2(prefix: str, target: str) -> list[float]:
        if "### Step 2." in prefix:
            raise down("s2")
        return [-0.2] if "u is done." in prefix else [-0.9]

    proposers = [ScriptedFakeTeacher(n, proposals=script(n), can_score=False) for n in "uv"]
    scorers = [
        ScriptedFakeTeacher("s1", logprobs=s1, can_propose=False),
        ScriptedFakeTeacher("s2", logprobs=s2, can_propose=False),
    ]
    result = await decode(
        DecodeJob.create(
            "q",
            [*proposers, *scorers],
            DecodeOptions(beam_width=2, max_steps=2, include_candidates=True),
            reference_answer=REFERENCE,
        )
    )

    round_one = by_text(round_records(result)[1])
    assert round_one["### Step 1. u is done."].log_score == pytest.approx(-0.6, abs=TOL)
    assert result.rounds[1].scorers_left_out == ["s2"]
    round_two = round_records(result)[2]
    assert {r.text: r.selected for r in round_two} == {
        "### Step 2. u follows.": True,
        "### Step 2. v follows.": True,
    }
    reasonings = {t.reasoning for t in result.traces}
    assert "### Step 1. v goes on.\n\n### Step 2. v follows." in reasonings
    assert "### Step 1. v goes on.\n\n### Step 2. u follows." in reasonings
    assert_best_first(result)
    assert result.best.reasoning == "### Step 1. v goes on.\n\n### Step 2. u follows."


# --- finding 5: a model listed twice counts twice ------------------------------------------------
#
# Model m is listed twice (teachers m1 and m2, one score identity), model n once. m reads the
# reference at -0.5, n at -1.7: the mean per model is -1.1 (not -0.9, m counted twice).


def two_models_team(order: Sequence[str]) -> list[ScriptedFakeTeacher]:
    writer = ScriptedFakeTeacher(
        "w",
        proposals=lambda p: "42" if is_answer_prefix(p) else closing(" w step."),
        can_score=False,
    )
    reads = {"m1": [-0.5], "m2": [-0.5], "n": [-1.2, -2.2]}
    identity = {"m1": "m", "m2": "m", "n": "n"}
    scorers = {
        name: ScriptedFakeTeacher(
            name, logprobs=reads[name], can_propose=False, score_identity=identity[name]
        )
        for name in reads
    }
    return [writer, *(scorers[name] for name in order)]


@pytest.mark.parametrize(
    ("order", "named"),
    [(("m1", "m2", "n"), ["m1", "n"]), (("m2", "n", "m1"), ["m2", "n"])],
)
async def test_one_scorer_model_is_one_vote(order: tuple[str, ...], named: list[str]) -> None:
    team = two_models_team(order)
    result = await decode(
        DecodeJob.create(
            "q", team, DecodeOptions(beam_width=1, include_candidates=True), reference_answer="42"
        )
    )

    (step,) = result.best.steps
    assert step.log_score == pytest.approx(-1.1, abs=TOL)
    assert result.best.log_score == pytest.approx(-1.1, abs=TOL)
    assert [(p.scorer, p.weight) for p in step.scorers] == [(named[0], 1.0), (named[1], 1.0)]
    assert [p.mean_logprob for p in step.scorers] == pytest.approx([-0.5, -1.7], abs=TOL)
    # One reading per model: m1 and m2 share one call.
    m_calls = [c for t in team if t.name in {"m1", "m2"} for c in t.score_calls()]
    assert len(m_calls) == 1


async def test_a_models_weight_is_the_mean_of_its_teachers_weights() -> None:
    team = two_models_team(("m1", "m2", "n"))
    result = await decode(
        DecodeJob.create(
            "q",
            team,
            DecodeOptions(beam_width=1),
            reference_answer="42",
            scorer_weights={"m1": 1.0, "m2": 2.0, "n": 2.0},
        )
    )

    (step,) = result.best.steps
    assert [(p.scorer, p.weight) for p in step.scorers] == [("m1", 1.5), ("n", 2.0)]
    assert step.log_score == pytest.approx((1.5 * -0.5 + 2.0 * -1.7) / 3.5, abs=TOL)


# --- finding 8: the smaller ones -----------------------------------------------------------------


@pytest.mark.parametrize("body", ["", " ", "\n", "  \n "])
async def test_a_step_closing_right_after_its_marker_leaves_no_dangling_marker(
    body: str,
) -> None:
    def script(prefix: str) -> str | Proposal:
        if is_answer_prefix(prefix):
            return "42"
        return " first." if step_of(prefix) == 1 else closing(body, tokens=0)

    writer = ScriptedFakeTeacher("w", proposals=script, logprobs=[-0.5])
    result = await decode(
        DecodeJob.create("q", [writer], DecodeOptions(beam_width=1), reference_answer=REFERENCE)
    )

    trace = result.best
    assert trace.closed_by == "think"
    assert "### Step 2" not in trace.reasoning
    assert trace.reasoning == "### Step 1. first."
    (answer,) = writer.answer_calls()
    assert "### Step 2" not in answer.prefix
    assert answer.prefix.startswith("<think>\n### Step 1. first.")


@pytest.mark.parametrize("weight", [0, 0.0, -1.0, -1e-9, math.nan, math.inf, -math.inf])
def test_a_scorer_weight_that_is_not_positive_and_finite_is_refused(weight: float) -> None:
    writer = ScriptedFakeTeacher("a", proposals=[" step."], logprobs=[-0.5])
    with pytest.raises(InvalidRequestError) as caught:
        DecodeJob.create("q", [writer], reference_answer=REFERENCE, scorer_weights={"a": weight})
    assert caught.value.param == "scorer_weights"
    assert caught.value.status == 400


def test_a_positive_scorer_weight_is_accepted() -> None:
    writer = ScriptedFakeTeacher("a", proposals=[" step."], logprobs=[-0.5])
    job = DecodeJob.create("q", [writer], reference_answer=REFERENCE, scorer_weights={"a": 0.25})
    assert dict(job.scorer_weights) == {"a": 0.25}


@pytest.mark.parametrize("empty", ["", "  ", "\n"])
async def test_an_empty_proposal_is_recorded_as_a_failure(empty: str) -> None:
    def script(name: str) -> Script:
        def propose(prefix: str) -> str | Proposal:
            if is_answer_prefix(prefix):
                return "42"
            return empty if name == "quiet" else closing(" a real step.")

        return propose

    quiet = ScriptedFakeTeacher("quiet", proposals=script("quiet"), can_score=False)
    talker = ScriptedFakeTeacher("talker", proposals=script("talker"), logprobs=[-0.5])
    result = await decode(
        DecodeJob.create(
            "q",
            [quiet, talker],
            DecodeOptions(beam_width=2, include_candidates=True),
            reference_answer=REFERENCE,
        )
    )

    assert [(f.step, f.teacher, f.role, f.code) for f in result.failures] == [
        (1, "quiet", "propose", "empty_proposal")
    ]
    records = result.best.steps[0].candidates
    assert records is not None
    assert [r.proposers for r in records] == [["talker"]]


async def test_the_thinking_budget_counts_the_whole_thinking_text() -> None:
    """Markers and separators count: o200k_base tokens of the thinking between the tags."""
    from cord_proxy.teachers.capabilities import prepare_litellm_env

    prepare_litellm_env()
    import tiktoken

    encoding = tiktoken.get_encoding("o200k_base")
    budget = 25
    writer = ScriptedFakeTeacher(
        "w",
        proposals=lambda p: "42" if is_answer_prefix(p) else " a b c d",  # 4 words a step
        logprobs=[-0.5],
    )
    result = await decode(
        DecodeJob.create(
            "q",
            [writer],
            DecodeOptions(beam_width=1, thinking_budget=budget),
            reference_answer=REFERENCE,
        )
    )

    trace = result.best
    texts = [s.text for s in trace.steps]
    counted = len(encoding.encode("".join(texts)))
    # The teachers' bodies, counted as the fake counts them (words after "### Step N.").
    bodies = sum(len(text.split()) - 3 for text in texts)
    assert trace.closed_by == "budget"
    # The markers ("### Step N.") and separators count: far more than the bodies' words.
    assert trace.reasoning_tokens > bodies + len(texts)
    assert abs(trace.reasoning_tokens - counted) <= 2, (trace.reasoning_tokens, counted, texts)
    # Closed when the count reached the budget: not before, and not a whole step later.
    assert len(encoding.encode("".join(texts[:-1]))) < budget
    assert budget - 10 <= trace.reasoning_tokens <= budget + 10
    # Counting only the bodies would have allowed 7 steps (4 + 4 + 4 + 4 + 4 + 4 + 1 = 25).
    assert len(trace.steps) <= 3
