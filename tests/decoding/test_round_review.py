"""A round builds its candidates from what arrived, in one order (review regressions).

A seeded round cut at its deadline goes on with the proposals that arrived; twins that differ
only in whitespace are one candidate written as the first proposer in ensemble order wrote
it; a step's readers follow all its proposers at the deadline too; reads cut at the deadline
or by cancelling the decode have ended before anything goes on; a finished trace that lacks
a reading when no model is left out sits the round out. All against in-process scripted fake
teachers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import pytest

from cord_proxy.decoding import DecodeJob, DecodeOptions, decode
from cord_proxy.decoding.tokens import count_tokens
from cord_proxy.decoding.trace import DecodeResult
from cord_proxy.errors import TeacherUnreachableError
from cord_proxy.teachers.base import Message, Proposal, SpanScore
from tests.support.fakes import (
    CallRecord,
    ScriptedFakeTeacher,
    is_answer_prefix,
    round_records,
    wait_until,
)

REFERENCE = "5"


@pytest.fixture(autouse=True, scope="module")
def loaded_encoding() -> None:
    """The token encoding's first load (about 0.4 s) is kept out of the timed rounds."""
    count_tokens("warm")


def closing(text: str) -> Proposal:
    return Proposal(text, "stop", len(text.split()), stop_string="</think>")


def steps_by(name: str):  # type: ignore[no-untyped-def]
    return lambda p: " ans" if is_answer_prefix(p) else f" step by {name}."


# --- a seeded round cut at its deadline ---------------------------------------------------------


async def test_a_seeded_round_goes_on_with_the_proposals_that_arrived() -> None:
    """B is cut at the deadline; A's proposal arrived: step 1 is A's, seeded or not."""
    for seed in (None, 1):
        a = ScriptedFakeTeacher("A", proposals=steps_by("A"), logprobs=[-0.5])
        b = ScriptedFakeTeacher("B", proposals=steps_by("B"), logprobs=[-0.5], propose_delay=5.0)
        options = DecodeOptions(beam_width=2, max_steps=1, seed=seed, round_timeout=0.3)
        result = await asyncio.wait_for(
            decode(DecodeJob.create("q", [a, b], options, reference_answer=REFERENCE)), 10
        )
        assert result.rounds[0].cut == ["B"], seed
        assert result.best.reasoning == "### Step 1. step by A.", seed
        assert result.best.steps[0].proposers == ["A"], seed
        assert [c.outcome for c in a.proposals_calls()] == ["ok"], seed


async def test_a_cut_in_a_later_seeded_round_does_not_end_the_search() -> None:
    """Round 2 cuts B; A's continuation of the live beam is kept, as it is unseeded."""

    def script_a(prefix: str) -> str | Proposal:
        if is_answer_prefix(prefix):
            return " ans"
        return " more A." if "B1." in prefix else closing(" done.")

    def script_b(prefix: str) -> str:
        if is_answer_prefix(prefix):
            return " ans"
        return " more B." if "B1." in prefix else " B1."

    def b_delay(prefix: str) -> float:
        return 5.0 if "B1." in prefix and not is_answer_prefix(prefix) else 0.0

    async def traces(seed: int | None) -> list[tuple[str, str]]:
        a = ScriptedFakeTeacher("A", proposals=script_a, logprobs=[-0.5])
        b = ScriptedFakeTeacher("B", proposals=script_b, logprobs=[-0.5], propose_delay=b_delay)
        options = DecodeOptions(beam_width=2, max_steps=2, seed=seed, round_timeout=0.3)
        result = await asyncio.wait_for(
            decode(DecodeJob.create("q", [a, b], options, reference_answer=REFERENCE)), 10
        )
        assert [r.cut for r in result.rounds] == [[], ["B"]], seed
        return [(t.reasoning, t.answer) for t in result.traces]

    unseeded = await traces(None)
    assert any("### Step 2. more A." in reasoning for reasoning, _ in unseeded)
    assert await traces(1) == unseeded


# --- twins that differ only in whitespace -------------------------------------------------------


async def test_a_twin_is_written_and_scored_as_its_first_proposer_in_ensemble_order() -> None:
    """H1 and H2 write the same words, H2 with a trailing newline (which the scorer likes
    better). The candidate is H1's text and H1's score, whichever arrives first, seeded or not."""

    def proposer(name: str, text: str, delay: float) -> ScriptedFakeTeacher:
        def script(prefix: str) -> str | Proposal:
            return " done" if is_answer_prefix(prefix) else closing(text)

        return ScriptedFakeTeacher(name, proposals=script, propose_delay=delay, can_score=False)

    def reads(prefix: str, _target: str) -> list[float]:
        if "5.\n" in prefix:
            return [-0.2]
        return [-0.5] if "maybe" in prefix else [-1.0]

    async def once(seed: int | None, first: str) -> tuple[object, ...]:
        teachers = [
            proposer("H1", " 2 + 3 = 5.", 0.0 if first == "H1" else 0.02),
            proposer("H2", " 2 + 3 = 5.\n", 0.0 if first == "H2" else 0.02),
            proposer("H3", " maybe 5.", 0.01),
            ScriptedFakeTeacher("S", logprobs=reads, can_propose=False),
        ]
        options = DecodeOptions(beam_width=1, max_steps=1, seed=seed, include_candidates=True)
        result = await decode(DecodeJob.create("2+3?", teachers, options, reference_answer="5"))
        records = [(c.text, c.proposers, c.log_score) for c in round_records(result)[1]]
        return records, result.best.reasoning, result.best.log_score

    runs = {(seed, first): await once(seed, first) for seed in (None, 7) for first in ("H1", "H2")}
    expected = (
        [("### Step 1. 2 + 3 = 5.", ["H1", "H2"], -1.0), ("### Step 1. maybe 5.", ["H3"], -0.5)],
        "### Step 1. maybe 5.",
        -0.5,
    )
    assert runs == dict.fromkeys(runs, expected)


# --- a step's readers at the deadline -----------------------------------------------------------


async def test_a_steps_readers_are_the_models_none_of_its_proposers_is_at_the_deadline() -> None:
    """Step mode: hosted H and A write " x." (A a little later), B writes " y.". A is one of
    the step's proposers, so only B reads it, whether B's proposal is cut or arrives."""

    def script(text: str):  # type: ignore[no-untyped-def]
        return lambda p: " ans" if is_answer_prefix(p) else text

    for timeout, b_delay, cut in ((0.3, 5.0, ["B"]), (60.0, 0.0, [])):
        h = ScriptedFakeTeacher("H", proposals=script(" x."), can_score=False)
        a = ScriptedFakeTeacher("A", proposals=script(" x."), logprobs=[-0.1], propose_delay=0.05)
        b = ScriptedFakeTeacher(
            "B", proposals=script(" y."), logprobs=[-2.0], propose_delay=b_delay
        )
        options = DecodeOptions(
            beam_width=1, max_steps=1, round_timeout=timeout, include_candidates=True
        )
        result = await asyncio.wait_for(decode(DecodeJob.create("q", [h, a, b], options)), 10)
        assert result.score_mode == "step"
        assert result.rounds[0].cut == cut
        [x] = [c for c in round_records(result)[1] if c.text == "### Step 1. x."]
        assert x.proposers == ["H", "A"], timeout
        assert [p.scorer for p in x.scorers] == ["B"], timeout
        assert not x.self_scored


# --- reads cut at the deadline or by cancelling the decode --------------------------------------


class SlowToStop(ScriptedFakeTeacher):
    """A FAKE scorer whose reading takes 1 s and, once cancelled, 0.3 s more to wind down (an
    HTTP clean-up, a retry layer) before it re-raises; cancelling it again does not hurry it."""

    async def score(self, conversation: Sequence[Message], prefix: str, target: str) -> SpanScore:
        async def body() -> SpanScore:
            try:
                await asyncio.sleep(1.0)
            except asyncio.CancelledError:
                await wind_down(0.3)
                raise
            raise AssertionError("the reading was meant to be cut")

        record = CallRecord(self.name, "score", list(conversation), prefix, target)
        return await self._track(record, body())


async def wind_down(seconds: float) -> None:
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    while (left := until - loop.time()) > 0:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(left)


def a_step(prefix: str) -> str:
    return " the answer." if is_answer_prefix(prefix) else " a step."


async def test_reads_cut_at_the_deadline_have_ended_before_the_next_round_and_the_return() -> None:
    slow = SlowToStop("S", can_propose=False)
    at_round_start: list[int] = []

    def note(prefix: str) -> float:
        if not is_answer_prefix(prefix):
            at_round_start.append(slow.in_flight)
        return 0.0

    p = ScriptedFakeTeacher("P", proposals=a_step, can_score=False, propose_delay=note)
    q = ScriptedFakeTeacher("Q", proposals=a_step, logprobs=[-0.5])
    options = DecodeOptions(beam_width=1, max_steps=2, round_timeout=0.2)
    try:
        result = await asyncio.wait_for(
            decode(DecodeJob.create("q", [p, q, slow], options, reference_answer=REFERENCE)), 10
        )
        assert [r.cut for r in result.rounds] == [["S"], ["S"]]
        assert at_round_start == [0, 0]
        assert slow.in_flight == 0
    finally:
        await wait_until(lambda: slow.in_flight == 0)  # nothing left behind for the next test


async def test_reads_cut_by_cancelling_the_decode_have_ended_once_it_is_awaited() -> None:
    slow = SlowToStop("S", can_propose=False)
    p = ScriptedFakeTeacher("P", proposals=a_step, can_score=False)
    options = DecodeOptions(beam_width=1, max_steps=2)
    task = asyncio.create_task(
        decode(DecodeJob.create("q", [p, slow], options, reference_answer=REFERENCE))
    )
    try:
        await wait_until(lambda: slow.in_flight > 0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert slow.in_flight == 0
    finally:
        await wait_until(lambda: slow.in_flight == 0)


# --- a finished trace that lacks a reading when no model is left out ----------------------------


def last_step(prefix: str) -> str:
    thinking = prefix.split("</think>")[0].rstrip()
    return next(tag for tag in ("c1.", "c2.", "c3.", "c4.", "f.", "g.") if thinking.endswith(tag))


def round_two_hosted(name: str, second: str) -> ScriptedFakeTeacher:
    """Round 1: H1 finishes with " f.", the others write " g.". Round 2 continues " g."."""

    def script(prefix: str) -> str | Proposal:
        if is_answer_prefix(prefix):
            return f" {name} answers"
        if "g." in prefix:
            return f" {second}"
        return closing(" f.") if name == "H1" else " g."

    return ScriptedFakeTeacher(name, proposals=script, can_score=False)


def scorer(
    name: str, values: dict[str, float | None], delays: dict[str, float]
) -> ScriptedFakeTeacher:
    """Reads the scripted value for the last step of the prefix (None: the read fails)."""

    def reads(prefix: str, _target: str) -> list[float]:
        value = values[last_step(prefix)]
        if value is None:
            raise TeacherUnreachableError(name, "blip")
        return [value]

    return ScriptedFakeTeacher(
        name,
        logprobs=reads,
        can_propose=False,
        score_delay=lambda p, _t: delays.get(last_step(p), 0.0),
    )


async def chosen_in_round_two(shift: float) -> tuple[list[str], DecodeResult]:
    """B fails on " f." in round 1 (it is left out there). In round 2, A fails on c1 and B on
    c2, so no model is left out; " f." lacks B's reading, and B's readings move by `shift`."""
    a = scorer(
        "A",
        {"g.": -1.0, "f.": -1.6, "c1.": None, "c2.": -1.0, "c3.": -1.0, "c4.": -1.0},
        {"c1.": 0.0},
    )
    b = scorer(
        "B",
        {
            "g.": -1.0,
            "f.": None,
            "c1.": -1.0,
            "c2.": None,
            "c3.": -2.0 + shift,
            "c4.": -2.6 + shift,
        },
        {"f.": 0.0, "g.": 0.01, "c1.": 0.01, "c2.": 0.02, "c3.": 0.03, "c4.": 0.04},
    )
    hosted = [round_two_hosted(f"H{i}", f"c{i}.") for i in range(1, 5)]
    options = DecodeOptions(beam_width=2, max_steps=2, seed=3, include_candidates=True)
    result = await decode(
        DecodeJob.create("q", [*hosted, a, b], options, reference_answer=REFERENCE)
    )
    chosen = sorted(c.text.rsplit(" ", 1)[-1] for c in round_records(result)[2] if c.selected)
    return chosen, result


async def test_a_constant_added_to_one_scorer_does_not_change_the_choice() -> None:
    """A finished trace read by fewer judges than the round's candidates sits the round out:
    shifting B's log-probabilities by +1.5 changes neither the chosen candidates nor whether
    " f." keeps its slot."""
    unshifted, first = await chosen_in_round_two(0.0)
    shifted, second = await chosen_in_round_two(1.5)
    for result in (first, second):
        assert [r.scorers_left_out for r in result.rounds] == [["B"], []]
        assert any(t.reasoning == "### Step 1. f." for t in result.traces)
    assert unshifted == shifted
    assert unshifted == ["c3.", "c4."]  # " f." does not keep its slot over them
