"""One round of the search (docs/method.md, "The loop", steps 1 and 2).

Every proposer continues every beam at once. Once every proposal is in (or the proposals'
deadline has passed), the candidates are built from what arrived in one order (beam,
teacher in the ensemble, proposal), whatever the order of arrival: the same text under one
parent is one candidate, written as its first proposer in that order wrote it and read by
the models that none of its proposers is. Then every scorer model reads all it is asked in
one batch (reading.py). Each phase has the round's deadline: calls still running then are
cut, and the round goes on with what arrived or was read. The round owns its arrivals, its
reads and its cuts, and returns its candidates ranked on equal terms (ranking.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from cord_proxy.decoding.candidates import Beam, Candidate
from cord_proxy.decoding.context import DecodeContext
from cord_proxy.decoding.cuts import Cuts
from cord_proxy.decoding.ranking import finished_questions, judge, take_readings
from cord_proxy.decoding.reading import Question, Reader
from cord_proxy.decoding.scorers import step_readers
from cord_proxy.decoding.tokens import count_tokens
from cord_proxy.decoding.trace import ClosedBy, RoundTiming
from cord_proxy.errors import DecodeError, TeacherError, TeachersTimedOutError
from cord_proxy.teachers.affinity import use_routing_key
from cord_proxy.teachers.base import THINK_CLOSE, Proposal, Teacher

MergeKey = tuple[int, str, bool]


@dataclass(frozen=True)
class RoundOutcome:
    candidates: list[Candidate]
    finished: list[Beam]  # the finished traces that compete in this round, on its judges
    timing: RoundTiming


@dataclass(frozen=True)
class Arrival:
    """What one proposer wrote for one beam."""

    beam: Beam
    order: int
    teacher: Teacher
    proposals: list[Proposal]


def merge_key(candidate: Candidate) -> MergeKey:
    """Candidates with one key are one: same parent, same words, both closing or neither."""
    words = " ".join(candidate.body.split())
    return candidate.beam.index, words, candidate.closes is not None


class Round:
    def __init__(
        self, context: DecodeContext, step: int, beams: Sequence[Beam], finished: Sequence[Beam]
    ):
        self.context = context
        self.step = step
        self.beams = list(beams)
        self.finished = list(finished)
        self._arrivals: list[Arrival] = []
        self._counted: dict[str, int] = {}
        self._cuts = Cuts()
        self._reader = Reader(context, step, self._cuts)
        self._identity = {t.name: t.score_identity for t in context.proposers}

    async def run(self) -> RoundOutcome:
        started = time.perf_counter()
        self._check_proposers_left()
        cut = await self._within_deadline(self._propose_all())
        proposed = time.perf_counter()
        cut += await self._within_deadline(self._read_all())
        read = time.perf_counter()
        candidates = self._candidates()
        judged = judge(self.context, candidates, self.finished)
        timing = RoundTiming(
            step=self.step,
            wall_s=time.perf_counter() - started,
            critical_s=read - started,
            propose_s=proposed - started,
            score_s=read - proposed,
            candidates=len(candidates),
            scorers_left_out=judged.left_out,
            cut=sorted(set(cut)),
        )
        return RoundOutcome(candidates, judged.finished, timing)

    async def _within_deadline(self, phase: Coroutine[Any, Any, None]) -> list[str]:
        """Run one phase of the round within the round's deadline: the teachers cut."""
        deadline = self.context.options.round_timeout
        try:
            async with asyncio.timeout(deadline):
                await phase
        except TimeoutError:
            return self._cuts.record(self.context.log, self.step, deadline)
        return []

    def _check_proposers_left(self) -> None:
        log = self.context.log
        if all(log.is_dropped(t.name) for t in self.context.proposers):
            last = log.records[-1].error if log.records else "no error recorded"
            error = TeachersTimedOutError if log.only_timeouts(self.step - 1) else DecodeError
            raise error(
                f"step {self.step}: every proposer has failed and was dropped "
                f"({', '.join(log.dropped)}); last error: {last}"
            )

    async def _propose_all(self) -> None:
        log = self.context.log
        async with asyncio.TaskGroup() as group:
            for beam in self.beams:
                for order, teacher in enumerate(self.context.proposers):
                    if not log.is_dropped(teacher.name):
                        group.create_task(self._propose_one(beam, order, teacher))

    async def _propose_one(self, beam: Beam, order: int, teacher: Teacher) -> None:
        use_routing_key(beam.route)
        arrival = Arrival(beam, order, teacher, await self._propose(beam, teacher))
        self._arrivals.append(arrival)
        for proposal in arrival.proposals:
            if not proposal.text.strip() and self._closing(beam, proposal, 0) is None:
                self.context.log.empty_proposal(self.step, teacher.name)

    async def _read_all(self) -> None:
        """Every candidate is read by the readers all its proposers leave (and, in reference
        mode, every finished trace by the models that have not read it), in one batch a model."""
        questions = [q for c in self._merged(self._arrivals) for q in self._questions(c)]
        if not self.context.step_mode:
            for beam in self.finished:
                questions += finished_questions(self.context, beam)
        try:
            await self._reader.read_all(questions)
        finally:
            if not self.context.step_mode:
                for beam in self.finished:
                    take_readings(self._reader, beam)

    async def _propose(self, beam: Beam, teacher: Teacher) -> list[Proposal]:
        context, options = self.context, self.context.options
        started = time.perf_counter()
        usage = context.usage[teacher.name]
        usage.propose_calls += 1
        try:
            with self._cuts.watch(teacher.name, "propose"):
                proposals = await teacher.propose(
                    context.conversation,
                    beam.text + beam.opening,
                    n=options.proposals_per_teacher,
                    stop=context.segmenter.stop_strings,
                    max_tokens=min(options.max_step_tokens, options.thinking_budget - beam.tokens),
                    seed=context.seed(teacher.name, self.step, beam.index),
                    temperature=options.temperature,
                    top_p=options.top_p,
                    reserve=options.answer_budget,
                    **context.step_extras(),
                )
        except TeacherError as error:
            context.log.proposer_failed(self.step, teacher.name, "propose", error)
            return []
        finally:
            usage.latency_s += time.perf_counter() - started
        context.log.proposer_succeeded(teacher.name)
        context.count_proposals(teacher.name, self.step, proposals)
        return proposals

    def _candidates(self) -> list[Candidate]:
        """The round's candidates from everything that arrived, with the readings made."""
        candidates = self._merged(self._arrivals)
        for candidate in candidates:
            self._attach_readings(candidate)
        return candidates

    def _merged(self, arrivals: Sequence[Arrival]) -> list[Candidate]:
        """Candidates in (beam, teacher, proposal) order; the same text joins its first twin."""
        merged: dict[MergeKey, Candidate] = {}
        for arrival in sorted(arrivals, key=lambda a: (a.beam.index, a.order)):
            for index, proposal in enumerate(arrival.proposals):
                candidate = self._candidate(arrival, index, proposal)
                if candidate is None:
                    continue
                twin = merged.setdefault(merge_key(candidate), candidate)
                if twin is not candidate and arrival.teacher.name not in twin.proposers:
                    twin.proposers.append(arrival.teacher.name)
        candidates = list(merged.values())
        for candidate in candidates:
            self._choose_readers(candidate)
        return candidates

    def _candidate(self, arrival: Arrival, index: int, proposal: Proposal) -> Candidate | None:
        """One proposal as a candidate; None for an empty one that does not close the thinking."""
        beam = arrival.beam
        blank = not proposal.text.strip()
        appended = "" if blank else beam.opening + proposal.text
        step_text = self.context.segmenter.step_text(appended)
        tokens = self._count(step_text)
        closes = self._closing(beam, proposal, tokens)
        if blank and closes is None:
            return None
        order = (beam.index, arrival.order, index)
        names = [arrival.teacher.name]
        return Candidate(order, beam, proposal, names, closes, appended, step_text, tokens)

    def _count(self, step_text: str) -> int:
        """The tokens a step adds to the trace (with its separator), counted once a round."""
        if not step_text:
            return 0
        if step_text not in self._counted:
            self._counted[step_text] = count_tokens(step_text)
        return self._counted[step_text]

    def _closing(self, beam: Beam, proposal: Proposal, tokens: int) -> ClosedBy | None:
        if proposal.stop_string == THINK_CLOSE:
            return "think"
        if proposal.context_full:
            return "context"
        if proposal.finish_reason == "closed":
            return "eos"
        if beam.tokens + tokens >= self.context.options.thinking_budget:
            return "budget"
        return None

    def _choose_readers(self, candidate: Candidate) -> None:
        """Reference mode: every model. Step mode: every model none of its proposers is."""
        models = self.context.models
        if self.context.step_mode:
            proposers = {self._identity[name] for name in candidate.proposers}
            readers, candidate.self_scored = step_readers(models, proposers)
        else:
            readers = models
        candidate.readers = [model.identity for model in readers]

    def _questions(self, candidate: Candidate) -> list[Question]:
        prefix, target = self._question(candidate)
        route = candidate.beam.route
        return [
            Question(model, prefix, target, route)
            for model in self.context.models
            if model.identity in candidate.readers
        ]

    def _attach_readings(self, candidate: Candidate) -> None:
        prefix, target = self._question(candidate)
        for model in self.context.models:
            if model.identity not in candidate.readers:
                continue
            made = self._reader.made(model, prefix, target)
            if made is not None and made.part is not None:
                candidate.readings[model.identity] = made.part

    def _question(self, candidate: Candidate) -> tuple[str, str]:
        """The scored context and the scored span of one candidate."""
        context, beam = self.context, candidate.beam
        if context.reference is not None:
            prefix = beam.text + candidate.appended + context.options.answer_prompt
            return prefix, context.reference
        target = candidate.body if candidate.appended else THINK_CLOSE
        return beam.text + (beam.opening if candidate.appended else ""), target
