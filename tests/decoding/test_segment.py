"""Segmentation (docs/method.md, "Steps"): prompt-guided markers, line breaks, prefix markers."""

from __future__ import annotations

import pytest

from cord_proxy.decoding import DecodeJob, DecodeOptions, decode
from cord_proxy.decoding.segment import (
    close_thinking,
    segmenter_for,
)
from cord_proxy.teachers.base import THINK_CLOSE, THINK_OPEN, Proposal
from tests.support.fakes import ScriptedFakeTeacher, is_answer_prefix


def stopped_at(text: str, stop: str) -> Proposal:
    return Proposal(text, "stop", len(text.split()), stop_string=stop)


# --- the segmenters themselves -----------------------------------------------------------------


def test_prompt_segmenter_writes_numbered_step_markers() -> None:
    seg = segmenter_for(DecodeOptions(segmentation="prompt"))

    assert seg.stop_strings == ("### Step", THINK_CLOSE)
    assert seg.opening(1) == "### Step 1."
    assert seg.opening(7, stopped_at(" x", "### Step")) == "### Step 7."
    assert seg.join(THINK_OPEN, "### Step 1.", " Add.") == "<think>\n### Step 1. Add.\n\n"
    # A body that already ends a line is not padded again.
    assert seg.join(THINK_OPEN, "### Step 1.", " Add.\n") == "<think>\n### Step 1. Add.\n"


def test_newline_segmenter_stops_at_blank_lines_and_writes_them_back() -> None:
    seg = segmenter_for(DecodeOptions(segmentation="newline"))

    assert seg.stop_strings == ("\n\n", THINK_CLOSE)
    assert seg.opening(1) == ""
    assert seg.opening(2, stopped_at("First.", "\n\n")) == ""
    assert seg.join("<think>\nFirst.\n\n", "", "Second.") == "<think>\nFirst.\n\nSecond.\n\n"


def test_markers_segmenter_starts_the_next_step_with_the_marker_it_stopped_at() -> None:
    seg = segmenter_for(DecodeOptions(segmentation="markers", markers=("Wait", "Hmm")))

    assert seg.stop_strings == ("Wait", "Hmm", THINK_CLOSE)
    assert seg.opening(1) == ""
    assert seg.opening(2, stopped_at("x = 6. ", "Wait")) == "Wait"
    assert seg.opening(2, stopped_at("x = 6. ", "Hmm")) == "Hmm"
    assert seg.opening(2, stopped_at("x = 6.", THINK_CLOSE)) == ""
    assert seg.opening(2, Proposal("x", "length", 1)) == ""
    assert seg.join("<think>\nx = 6. ", "Wait", ", no.") == "<think>\nx = 6. Wait, no."


def test_markers_segmentation_defaults_to_the_papers_markers() -> None:
    seg = segmenter_for(DecodeOptions(segmentation="markers"))
    assert seg.stop_strings == ("Wait", "Alternatively", "Let me check", THINK_CLOSE)


@pytest.mark.parametrize(
    ("text", "closed"),
    [
        ("<think>\nA.\n\n", "<think>\nA.\n\n</think>"),
        ("<think>\nA.", "<think>\nA.\n</think>"),
    ],
)
def test_close_thinking_puts_the_close_tag_on_its_own_line(text: str, closed: str) -> None:
    assert close_thinking(text) == closed


# --- through decode --------------------------------------------------------------------------


async def test_prompt_mode_writes_step_markers_and_cuts_at_the_next_marker() -> None:
    def proposals(prefix: str) -> str | Proposal:
        if is_answer_prefix(prefix):
            return " 5"
        if prefix.endswith("### Step 1."):
            return stopped_at(" Add 2 and 3.", "### Step")
        return stopped_at(" The sum is 5.", THINK_CLOSE)

    writer = ScriptedFakeTeacher("writer", proposals=proposals, logprobs=[-0.1])

    result = await decode(
        DecodeJob.create("2+3?", [writer], DecodeOptions(beam_width=1), reference_answer="5")
    )

    calls = writer.proposals_calls()
    assert [c.prefix for c in calls] == [
        "<think>\n### Step 1.",
        "<think>\n### Step 1. Add 2 and 3.\n\n### Step 2.",
    ]
    assert {c.stop for c in calls} == {("### Step", "</think>")}
    (answer_call,) = writer.answer_calls()
    assert answer_call.prefix == (
        "<think>\n### Step 1. Add 2 and 3.\n\n### Step 2. The sum is 5.\n\n</think>\n\n"
    )
    trace = result.best
    assert [s.text for s in trace.steps] == [
        "### Step 1. Add 2 and 3.\n\n",
        "### Step 2. The sum is 5.\n\n",
    ]
    assert [s.index for s in trace.steps] == [1, 2]
    assert trace.reasoning == "### Step 1. Add 2 and 3.\n\n### Step 2. The sum is 5."
    assert trace.closed_by == "think"
    assert trace.answer == "5"


async def test_newline_mode_cuts_at_blank_lines() -> None:
    def proposals(prefix: str) -> str | Proposal:
        if is_answer_prefix(prefix):
            return "5"
        if prefix == "<think>\n":
            return stopped_at("First line.", "\n\n")
        if prefix.endswith("First line.\n\n"):
            return stopped_at("Second line.", "\n\n")
        return stopped_at("Done.", THINK_CLOSE)

    writer = ScriptedFakeTeacher("writer", proposals=proposals, logprobs=[-0.1])

    result = await decode(
        DecodeJob.create(
            "q", [writer], DecodeOptions(beam_width=1, segmentation="newline"), reference_answer="5"
        )
    )

    calls = writer.proposals_calls()
    assert [c.prefix for c in calls] == [
        "<think>\n",
        "<think>\nFirst line.\n\n",
        "<think>\nFirst line.\n\nSecond line.\n\n",
    ]
    assert {c.stop for c in calls} == {("\n\n", "</think>")}
    assert writer.answer_calls()[0].prefix == (
        "<think>\nFirst line.\n\nSecond line.\n\nDone.\n\n</think>\n\n"
    )
    trace = result.best
    assert [s.text for s in trace.steps] == ["First line.\n\n", "Second line.\n\n", "Done.\n\n"]
    assert trace.reasoning == "First line.\n\nSecond line.\n\nDone."
    assert trace.closed_by == "think"


async def test_markers_mode_next_step_starts_with_the_marker_the_teacher_stopped_at() -> None:
    def proposals(prefix: str) -> str | Proposal:
        if is_answer_prefix(prefix):
            return "5"
        if prefix == "<think>\n":
            return stopped_at("2 + 3 = 6. ", "Wait")
        if prefix.endswith("Wait"):
            return stopped_at(", 2 + 3 = 5. ", "Alternatively")
        return stopped_at(", count up: 5.", THINK_CLOSE)

    writer = ScriptedFakeTeacher("writer", proposals=proposals, logprobs=[-0.1])

    result = await decode(
        DecodeJob.create(
            "q",
            [writer],
            DecodeOptions(beam_width=1, segmentation="markers", markers=("Wait", "Alternatively")),
            reference_answer="5",
        )
    )

    calls = writer.proposals_calls()
    assert [c.prefix for c in calls] == [
        "<think>\n",
        "<think>\n2 + 3 = 6. Wait",
        "<think>\n2 + 3 = 6. Wait, 2 + 3 = 5. Alternatively",
    ]
    assert {c.stop for c in calls} == {("Wait", "Alternatively", "</think>")}
    trace = result.best
    assert [s.text for s in trace.steps] == [
        "2 + 3 = 6. ",
        "Wait, 2 + 3 = 5. ",
        "Alternatively, count up: 5.",
    ]
    assert trace.reasoning == "2 + 3 = 6. Wait, 2 + 3 = 5. Alternatively, count up: 5."
    assert writer.answer_calls()[0].prefix == (
        "<think>\n2 + 3 = 6. Wait, 2 + 3 = 5. Alternatively, count up: 5.\n</think>\n\n"
    )


async def test_prompt_mode_reference_context_has_the_marker_and_the_answer_prompt() -> None:
    """The scored context is exactly what the teacher continued plus the step and the prompt."""
    writer = ScriptedFakeTeacher(
        "writer",
        proposals=lambda p: "5" if is_answer_prefix(p) else stopped_at(" 5.", THINK_CLOSE),
        can_score=False,
    )
    meta = ScriptedFakeTeacher("meta", logprobs=[-0.3], can_propose=False)

    await decode(
        DecodeJob.create("q", [writer, meta], DecodeOptions(beam_width=1), reference_answer="5")
    )

    assert [(c.prefix, c.target) for c in meta.score_calls()] == [
        ("<think>\n### Step 1. 5.</think> The final answer is ", "5")
    ]
