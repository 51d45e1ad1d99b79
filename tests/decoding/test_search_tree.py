"""The search tree every decode keeps (``DecodeResult.search``, each trace's ``path``), and the
per-teacher ``trainable`` setting marked on every step, candidate and answer."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cord_proxy.config import TeacherConfig
from cord_proxy.data.jsonl import encode_line
from cord_proxy.data.provenance import decode_provenance
from cord_proxy.data.records import trace_record
from cord_proxy.decoding import DecodeJob, DecodeOptions, decode
from cord_proxy.decoding.trace import DecodeResult
from cord_proxy.teachers.base import Proposal
from tests.support.fakes import ScriptedFakeTeacher, digest, hashed_logprobs, is_answer_prefix
from tests.support.search_tree import beam_texts, check_record


def closing(text: str) -> Proposal:
    return Proposal(text, "stop", len(text.split()), stop_string="</think>")


def branching(name: str, salt: str) -> ScriptedFakeTeacher:
    """A teacher whose steps depend on the prefix: b sometimes writes a's text (a merge), a
    step sometimes closes the thinking, and c sometimes closes it with nothing."""

    def propose(prefix: str) -> str | Proposal:
        if is_answer_prefix(prefix):
            return "42"
        key = digest(salt + prefix)
        writer = "a" if name == "b" and int(key, 16) % 3 == 0 else name
        body = f" {writer} thinks {key}."
        draw = int(digest(salt + name + prefix), 16)
        if name == "c" and draw % 7 == 0:
            return closing("")
        return closing(body) if draw % 5 == 0 and prefix.count("thinks") >= 1 else body

    return ScriptedFakeTeacher(name, proposals=propose, logprobs=hashed_logprobs(f"s-{name}"))


def as_json(value: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(encode_line(value)))


async def tree_decode(
    salt: str, segmentation: str, reference: str | None, include: bool = False
) -> tuple[DecodeJob, DecodeResult]:
    job = DecodeJob.create(
        "q",
        [branching(name, salt) for name in "abc"],
        DecodeOptions(
            beam_width=2,
            max_steps=5,
            thinking_budget=48,
            segmentation=segmentation,  # type: ignore[arg-type]
            include_candidates=include,
        ),
        reference_answer=reference,
    )
    return job, await decode(job)


@pytest.mark.parametrize("salt", ["s0", "s1", "s2", "s3"])
@pytest.mark.parametrize("segmentation", ["prompt", "newline"])
@pytest.mark.parametrize("reference", ["42", None])
async def test_the_search_is_one_tree_that_rebuilds_every_trace(
    salt: str, segmentation: str, reference: str | None
) -> None:
    job, result = await tree_decode(salt, segmentation, reference)
    assert [r.step for r in result.search] == [t.step for t in result.rounds]
    assert [len(r.candidates) for r in result.search] == [t.candidates for t in result.rounds]
    # Every beam that a round kept going is extended by the next round, and only those.
    live = {0}
    for entry in result.search:
        assert {c.parent for c in entry.candidates} == live
        live = {c.child for c in entry.candidates if c.child is not None and c.closes is None}
    assert any(c.parent == 1 for r in result.search for c in r.candidates)  # B = 2 branched
    # Without include_candidates the steps do not repeat their round's candidates.
    assert all(s.candidates is None for t in result.traces for s in t.steps)
    record = as_json(trace_record("r1", "e", job, result))
    check_record(record)
    assert record["path"] == result.best.path
    assert len(record["alternatives"]) == len(result.traces) - 1


async def test_the_tree_shows_merges_closes_and_every_beam() -> None:
    """Over the parametrised decodes above, the cases the tree must hold all happen."""
    merged, blank, kept_finished = 0, 0, 0
    for salt in ("s0", "s1", "s2", "s3"):
        _, result = await tree_decode(salt, "prompt", "42")
        candidates = [c for r in result.search for c in r.candidates]
        merged += sum(len(c.proposers) > 1 for c in candidates)
        blank += sum(c.step_text == "" and c.closes == "think" for c in candidates)
        kept_finished += sum(len(t.path) < len(result.search) + 1 for t in result.traces)
    assert merged and blank and kept_finished


async def test_include_candidates_steps_hold_their_rounds_records() -> None:
    job, result = await tree_decode("s1", "prompt", "42", include=True)
    for trace in result.traces:
        for number, step in enumerate(trace.steps, start=1):
            assert step.candidates == result.search[number - 1].candidates
    cord = decode_provenance(result, choices=2)
    assert cord["path"] == result.best.path and len(cord["search"]) == len(result.search)
    assert cord["answer_trainable"] is True and cord["choices"][0]["answer_trainable"] is True
    assert all(step["trainable"] is True for step in cord["steps"])
    check_record(as_json(trace_record("r1", "e", job, result)))


async def test_the_response_leaves_the_tree_out_unless_candidates_are_asked_for() -> None:
    _, result = await tree_decode("s2", "prompt", "42")
    cord = decode_provenance(result, choices=1)
    assert not {"search", "path", "answer_trainable"} & set(cord)
    assert all(step["candidates"] is None and "trainable" not in step for step in cord["steps"])


def configured(teacher: ScriptedFakeTeacher, trainable: bool) -> ScriptedFakeTeacher:
    """`teacher` as the proxy builds one from its config: with a `config` attribute."""
    config = TeacherConfig(
        name=teacher.name, base_url="http://127.0.0.1:9/v1", model="m", trainable=trainable
    )
    teacher.config = config  # type: ignore[attr-defined]
    return teacher


async def test_an_untrainable_teacher_marks_what_it_writes() -> None:
    """a may not be trained on: its own step and answer are marked, but the step it wrote
    with b (merged) is trainable, since b wrote the same text."""
    steps = {
        1: {"a": " add the numbers.", "b": "add  the numbers. ", "c": " guess."},
        2: {"a": " a ends.", "b": " b ends.", "c": " c ends."},
    }

    def script(name: str) -> Any:
        def propose(prefix: str) -> str | Proposal:
            if is_answer_prefix(prefix):
                return "42"
            step = prefix.count("### Step")
            return closing(steps[step][name]) if step == 2 else steps[step][name]

        return propose

    def logprobs(prefix: str, target: str) -> list[float]:
        return [-0.1] if prefix.count("numbers") + prefix.count("a ends") == 2 else [-2.0]

    writers = [ScriptedFakeTeacher(n, proposals=script(n), can_score=False) for n in "abc"]
    configured(writers[0], trainable=False)
    configured(writers[1], trainable=True)  # c has no config: trainable
    meta = ScriptedFakeTeacher("meta", logprobs=logprobs, can_propose=False)
    job = DecodeJob.create(
        "q", [*writers, meta], DecodeOptions(beam_width=1), reference_answer="42"
    )
    result = await decode(job)

    best = result.best
    assert [(s.proposers, s.trainable) for s in best.steps] == [(["a", "b"], True), (["a"], False)]
    assert best.answer_teacher == "a" and best.answer_trainable is False
    marks = [{tuple(c.proposers): c.trainable for c in r.candidates} for r in result.search]
    assert marks == [
        {("a", "b"): True, ("c",): True},
        {("a",): False, ("b",): True, ("c",): True},
    ]
    record = as_json(trace_record("r1", "e", job, result))
    assert record["answer_trainable"] is False
    assert [s["trainable"] for s in record["steps"]] == [True, False]
    check_record(record)


async def test_a_teacher_without_a_config_is_trainable() -> None:
    _, result = await tree_decode("s3", "prompt", None)
    assert all(t.answer_trainable for t in result.traces)
    assert all(c.trainable for r in result.search for c in r.candidates)
    assert beam_texts([r.model_dump(mode="json") for r in result.search])[0] == {0: ""}
