"""Issue 19, acceptance: properties of the ranking over random scripted decodes (hypothesis).

Each example draws a team (one to three local fakes, each its own scorer model, and at most
one hosted proposer), a seed that fixes every script (what each teacher proposes under each
prefix, which proposals close the thinking, the log-probabilities each scorer reads, which
calls fail), a beam width from 1 to 4, a number of steps, and reference or step mode. It then
runs three decodes of that example:

- the example as drawn, seeded;
- the same with a constant added to every log-probability of one scorer, seeded;
- the example as drawn, unseeded, with proposals arriving in a drawn order (small delays).

In every decode: every answered trace is in `traces` once, `traces` is best first and `best`
has the highest score, and equal text under one parent in one round has one score. Between
the first two: the same traces in the same order, and every round selects the same
candidates. Between the first and the third: round 1 scores every text the same.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cord_proxy.decoding import DecodeJob, DecodeOptions, decode
from cord_proxy.decoding.trace import DecodeResult
from cord_proxy.errors import DecodeError, TeacherUnreachableError
from cord_proxy.teachers.base import Proposal
from tests.support.fakes import (
    ScriptedFakeTeacher,
    answered,
    digest,
    is_answer_prefix,
    round_records,
)

EXAMPLES = 1000
TOL = 1e-9
REFERENCE = "42"


@dataclass(frozen=True)
class Example:
    seed: int
    local: int  # local fakes: propose and score, each its own scorer model
    hosted: int  # hosted proposers: cannot score
    beam_width: int
    max_steps: int
    reference: bool
    close_rate: float
    propose_fail_rate: float
    score_fail_rate: float
    answer_fail_rate: float
    shifted: int  # the local scorer whose log-probabilities are shifted
    shift: float


@st.composite
def examples(draw: st.DrawFn) -> Example:
    local = draw(st.integers(1, 3))
    return Example(
        seed=draw(st.integers(0, 2**32 - 1)),
        local=local,
        hosted=draw(st.integers(0, 1)),
        beam_width=draw(st.integers(1, 4)),
        max_steps=draw(st.integers(1, 5)),
        reference=draw(st.booleans()),
        close_rate=draw(st.sampled_from([0.0, 0.1, 0.25, 0.4])),
        propose_fail_rate=draw(st.sampled_from([0.0, 0.0, 0.15])),
        score_fail_rate=draw(st.sampled_from([0.0, 0.0, 0.05])),
        answer_fail_rate=draw(st.sampled_from([0.0, 0.3])),
        shifted=draw(st.integers(0, local - 1)),
        shift=draw(st.sampled_from([3.0, -3.0, 7.5])),
    )


def chance(*parts: object) -> random.Random:
    """A random stream fixed by `parts` (the example's seed first)."""
    return random.Random(hashlib.sha256(repr(parts).encode()).digest())


def down(name: str) -> TeacherUnreachableError:
    return TeacherUnreachableError(name, "connection refused")


def team(example: Example, shift: float = 0.0, delays: bool = False) -> list[ScriptedFakeTeacher]:
    seed = example.seed

    def propose(name: str) -> Callable[[str], str | Proposal | BaseException]:
        def script(prefix: str) -> str | Proposal | BaseException:
            if is_answer_prefix(prefix):
                if chance(seed, name, "answer", prefix).random() < example.answer_fail_rate:
                    return down(name)
                return f"{name} answers {digest(prefix)}"
            draw = chance(seed, name, "propose", prefix)
            if draw.random() < example.propose_fail_rate:
                return down(name)
            # Three texts per prefix, whoever writes them: teachers often write the same one.
            pick = draw.randrange(3)
            body = f" idea {digest(prefix, 4)}-{pick}."
            if chance(seed, "close", prefix, pick).random() < example.close_rate:
                if chance(seed, "blank", prefix, pick).random() < 0.15:
                    body = ""
                return Proposal(body, "stop", len(body.split()), stop_string="</think>")
            return body

        return script

    def reads(name: str, offset: float) -> Callable[[str, str], list[float]]:
        def logprobs(prefix: str, target: str) -> list[float]:
            draw = chance(seed, name, "score", prefix, target)
            if draw.random() < example.score_fail_rate:
                raise down(name)
            return [offset - draw.uniform(0.05, 4.0) for _ in range(draw.randint(1, 3))]

        return logprobs

    def delay(name: str) -> Callable[[str], float]:
        def seconds(prefix: str) -> float:
            if not delays or is_answer_prefix(prefix):
                return 0.0
            return chance(seed, name, "delay", prefix).random() * 0.004

        return seconds

    teachers = [
        ScriptedFakeTeacher(
            f"l{i}",
            proposals=propose(f"l{i}"),
            logprobs=reads(f"l{i}", shift if i == example.shifted else 0.0),
            propose_delay=delay(f"l{i}"),
            score_identity=f"model-{i}",
        )
        for i in range(example.local)
    ]
    teachers += [
        ScriptedFakeTeacher(
            f"h{i}", proposals=propose(f"h{i}"), can_score=False, propose_delay=delay(f"h{i}")
        )
        for i in range(example.hosted)
    ]
    return teachers


@dataclass
class Outcome:
    teachers: list[ScriptedFakeTeacher]
    result: DecodeResult | None
    error: DecodeError | None


decodes_tried = 0
tally: dict[str, int] = {}


def count(what: str, n: int = 1) -> None:
    tally[what] = tally.get(what, 0) + n


async def run(example: Example, shift: float = 0.0, seeded: bool = True) -> Outcome:
    global decodes_tried
    decodes_tried += 1
    teachers = team(example, shift, delays=not seeded)
    options = DecodeOptions(
        beam_width=example.beam_width,
        max_steps=example.max_steps,
        include_candidates=True,
        seed=example.seed if seeded else None,
    )
    job = DecodeJob.create(
        "q", teachers, options, reference_answer=REFERENCE if example.reference else None
    )
    try:
        result = await asyncio.wait_for(decode(job), 30)
    except DecodeError as error:
        assert all(t.in_flight == 0 for t in teachers)
        count("raised")
        return Outcome(teachers, None, error)
    assert all(t.in_flight == 0 for t in teachers)
    count("returned")
    count("traces", len(result.traces))
    count("rounds", len(result.rounds))
    records = [r for rs in round_records(result).values() for r in rs]
    count("candidates", len(records))
    count("merged candidates", sum(len(r.proposers) > 1 for r in records))
    count("failures", len(result.failures))
    return Outcome(teachers, result, None)


def check_one(outcome: Outcome) -> None:
    """The properties every decode has on its own."""
    result = outcome.result
    if result is None:
        return
    # Every answered trace is in `traces`, exactly once; nothing else is.
    written = answered(outcome.teachers)
    given_answers = [t.answer for t in result.traces]
    assert sorted(given_answers) == sorted(written), (given_answers, written)
    assert len(set(given_answers)) == len(given_answers)
    # Best first; `best` has the highest score of all finished traces.
    scores = [t.log_score for t in result.traces]
    assert scores == sorted(scores, reverse=True), scores
    assert result.best is result.traces[0]
    assert all(not math.isnan(s) for s in scores)
    # Equal text under one parent in one round: one score.
    for step, records in round_records(result).items():
        seen: dict[tuple[int, str], float | None] = {}
        for record in records:
            key = (record.parent, " ".join(record.text.split()))
            if key in seen:
                assert record.log_score == seen[key] or (
                    record.log_score is not None
                    and seen[key] is not None
                    and math.isclose(record.log_score, seen[key], abs_tol=TOL)  # type: ignore[arg-type]
                ), (step, key, record.log_score, seen[key])
            seen[key] = record.log_score


def ranking(result: DecodeResult) -> tuple[list[str], dict[int, list[tuple[int, str, bool]]]]:
    """The traces in order, and what each round selected."""
    rounds = {
        step: sorted((r.parent, r.text, r.selected) for r in records)
        for step, records in round_records(result).items()
    }
    return [t.reasoning for t in result.traces], rounds


def check_shifted(base: Outcome, moved: Outcome) -> None:
    """A constant added to one scorer's log-probabilities changes no ranking."""
    assert (base.error is None) == (moved.error is None), (base.error, moved.error)
    if base.result is None or moved.result is None:
        assert type(base.error) is type(moved.error)
        return
    assert ranking(moved.result) == ranking(base.result)


def check_arrival(base: Outcome, reordered: Outcome) -> None:
    """Round 1 scores every text the same, seeded or not, whatever order proposals arrive in."""
    if base.result is None or reordered.result is None:
        return
    first = round_records(base.result).get(1, [])
    other = round_records(reordered.result).get(1, [])
    scores = {(r.text, tuple(sorted(r.proposers))): r.log_score for r in first}
    again = {(r.text, tuple(sorted(r.proposers))): r.log_score for r in other}
    assert scores.keys() == again.keys()
    for key, score in scores.items():
        if score is None or again[key] is None:
            assert score == again[key], key
        else:
            assert math.isclose(score, again[key], abs_tol=TOL), (key, score, again[key])  # type: ignore[arg-type]


async def check(example: Example) -> None:
    base = await run(example)
    moved = await run(example, shift=example.shift)
    reordered = await run(example, seeded=False)
    for outcome in (base, moved, reordered):
        check_one(outcome)
    check_shifted(base, moved)
    check_arrival(base, reordered)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,  # the same examples on every run: CI is deterministic
    suppress_health_check=[HealthCheck.too_slow],
)
@given(examples())
def check_random_decodes(example: Example) -> None:
    # A loop of its own, never made the thread's current loop (pytest-asyncio keeps its own).
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(check(example))
    finally:
        loop.close()


def test_ranking_properties_over_random_scripted_decodes(record_property) -> None:  # type: ignore[no-untyped-def]
    global decodes_tried
    decodes_tried = 0
    tally.clear()
    started = time.perf_counter()
    check_random_decodes()
    elapsed = time.perf_counter() - started
    record_property("decodes_tried", decodes_tried)
    print(f"\nranking properties: {decodes_tried} decodes tried in {elapsed:.1f} s; {tally}")
    assert decodes_tried >= 3 * EXAMPLES
