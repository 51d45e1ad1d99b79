"""Candidates and finished traces compared on equal terms (docs/method.md, "Fair ranking").

Reference mode: every candidate of a round, and every finished trace it competes with, is
judged by the same scorer models, so a constant added to one model's log-probabilities moves
every compared score alike. Step mode: readers differ from step to step (nobody reads its own
steps), so each model's readings are centred on its mean over the round before they combine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from cord_proxy.decoding.candidates import Beam, Candidate
from cord_proxy.decoding.context import DecodeContext
from cord_proxy.decoding.reading import Question, Reader
from cord_proxy.decoding.scorers import ScorerModel
from cord_proxy.decoding.scoring import weighted_mean
from cord_proxy.decoding.trace import ScorerPart


@dataclass(frozen=True)
class Judgement:
    left_out: list[str]  # the scorer models left out of the round, by name
    finished: list[Beam]  # the finished traces that compete, scored on the round's judges


def judge(
    context: DecodeContext, candidates: Sequence[Candidate], finished: Sequence[Beam]
) -> Judgement:
    """Score a round's candidates (and, in reference mode, the finished traces they compete
    with) by the round's judges.

    A model that failed on any of them is left out for all. When that would leave no model
    at all, none is left out: what a model failed on goes unranked instead (a finished trace
    sits the round out; it stays finished, and is ranked again at the end).
    """
    if context.step_mode:
        return _judge_steps(context, candidates, finished)
    identities = [model.identity for model in context.models]
    lacking = {id(f): {i for i in identities if i not in f.readings} for f in finished}
    failed: set[str] = set().union(*(c.missing for c in candidates), *lacking.values())
    read = [i for c in candidates for i in c.readings] + [i for f in finished for i in f.readings]
    left_out = failed if set(read) - failed else set()
    judges = [model for model in context.models if model.identity not in left_out]
    for candidate in candidates:
        _judge_candidate(candidate, judges, unranked=bool(candidate.missing and not left_out))
    competing = [f for f in finished if not lacking[id(f)] - left_out]
    for beam in competing:
        _rejudge_finished(beam, judges)
    return Judgement([m.name for m in context.models if m.identity in left_out], competing)


def _judge_steps(
    context: DecodeContext, candidates: Sequence[Candidate], finished: Sequence[Beam]
) -> Judgement:
    failed: set[str] = set().union(*(c.missing for c in candidates))
    judging = {i for c in candidates for i in c.readings if i in c.readers} - failed
    left_out = failed if judging else set()
    judges = [model for model in context.models if model.identity not in left_out]
    for candidate in candidates:
        _judge_candidate(candidate, judges, unranked=bool(candidate.missing and not left_out))
    _centre(candidates, judges)
    names = [model.name for model in context.models if model.identity in left_out]
    return Judgement(names, list(finished))


async def compare_finished(context: DecodeContext, beams: Sequence[Beam], step: int) -> None:
    """Put every finished trace on one scale for the final ranking (reference mode).

    Each is read by every scorer model that can still read and has not read it yet, within
    one round's deadline; they are then compared on the models that read them all (on their
    own readings if none did).
    """
    if context.step_mode or len(beams) < 2:
        return
    reader = Reader(context, step)
    try:
        async with asyncio.timeout(context.options.round_timeout):
            await reader.read_all([q for beam in beams for q in finished_questions(context, beam)])
    except TimeoutError:
        reader.cuts.record(context.log, step, context.options.round_timeout)
    for beam in beams:
        take_readings(reader, beam)
    shared = [m for m in context.models if all(m.identity in b.readings for b in beams)]
    for beam in beams:
        _rejudge_finished(beam, shared or context.models)


def finished_questions(context: DecodeContext, beam: Beam) -> list[Question]:
    """A finished trace read again by the models that have not read it (reference mode)."""
    reference = context.reference
    assert reference is not None
    return [
        Question(model, beam.scored_prefix, reference, beam.route)
        for model in context.models
        if model.identity not in beam.readings
    ]


def take_readings(reader: Reader, beam: Beam) -> None:
    """The readings of a finished trace that `reader` made."""
    reference = reader.context.reference
    assert reference is not None
    for model in reader.context.models:
        made = reader.made(model, beam.scored_prefix, reference)
        if made is not None and made.part is not None:
            beam.readings.setdefault(model.identity, made.part)


def _judge_candidate(candidate: Candidate, judges: Sequence[ScorerModel], unranked: bool) -> None:
    if unranked:
        candidate.parts, candidate.log_score = [], None
        return
    readers = set(candidate.readers)
    candidate.parts = [
        candidate.readings[m.identity]
        for m in judges
        if m.identity in readers and m.identity in candidate.readings
    ]
    candidate.log_score = combined(candidate.parts) if candidate.parts else None


def _centre(candidates: Sequence[Candidate], judges: Sequence[ScorerModel]) -> None:
    """Step mode: each part less its scorer's mean over the round; the score combines those."""
    means: dict[str, float] = {}
    for model in judges:
        values = [p.mean_logprob for c in candidates for p in c.parts if p.scorer == model.name]
        if values:
            means[model.name] = sum(values) / len(values)
    for candidate in candidates:
        candidate.parts = [
            part.model_copy(update={"centred": part.mean_logprob - means[part.scorer]})
            for part in candidate.parts
        ]
        candidate.log_score = combined(candidate.parts) if candidate.parts else None


def _rejudge_finished(beam: Beam, judges: Sequence[ScorerModel]) -> None:
    parts = [beam.readings[m.identity] for m in judges if m.identity in beam.readings]
    if parts:
        beam.log_score = combined(parts)


def combined(parts: Sequence[ScorerPart]) -> float:
    """A candidate's log score: the weighted mean of its parts (centred ones in step mode)."""
    values = [p.mean_logprob if p.centred is None else p.centred for p in parts]
    return weighted_mean(values, [p.weight for p in parts])
