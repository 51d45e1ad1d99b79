"""One round of the search (docs/method.md, "The loop", steps 1 and 2).

Every proposer continues every beam at once; each candidate is read as soon as it arrives,
and again by whoever must read it once every proposal is in (a twin merged late changes its
readers). A round has one deadline: calls still running then are cut, and the round goes on
with what arrived. The round owns its candidates, its reads and its cuts, and returns them
ranked on equal terms (ranking.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cord_proxy.concurrency import gather_or_cancel
from cord_proxy.decoding.candidates import Beam, Candidate
from cord_proxy.decoding.context import DecodeContext
from cord_proxy.decoding.cuts import Cuts
from cord_proxy.decoding.ranking import fill_readings, judge
from cord_proxy.decoding.reading import Reader
from cord_proxy.decoding.scorers import ScorerModel, step_readers
from cord_proxy.decoding.tokens import count_tokens
from cord_proxy.decoding.trace import ClosedBy, RoundTiming
from cord_proxy.errors import DecodeError, TeacherError, TeachersTimedOutError
from cord_proxy.teachers.affinity import use_routing_key
from cord_proxy.teachers.base import THINK_CLOSE, Proposal, Teacher

MergeKey = tuple[int, str, bool]


@dataclass(frozen=True)
class RoundOutcome:
    candidates: list[Candidate]
    timing: RoundTiming


def normalise_whitespace(text: str) -> str:
    return " ".join(text.split())


class Round:
    """One step's proposals and reads. With a seed, a beam's proposals are merged in teacher
    order once they are all in, so the result does not depend on which arrived first."""

    def __init__(
        self, context: DecodeContext, step: int, beams: Sequence[Beam], finished: Sequence[Beam]
    ):
        self.context = context
        self.step = step
        self.beams = list(beams)
        self.finished = list(finished)
        self.candidates: list[Candidate] = []
        self._merged: dict[MergeKey, Candidate] = {}
        self._cuts = Cuts()
        self._reader = Reader(context, step, self._cuts)
        self._identity = {t.name: t.score_identity for t in context.proposers}

    async def run(self) -> RoundOutcome:
        started = time.perf_counter()
        self._check_proposers_left()
        options = self.context.options
        cut: list[str] = []
        try:
            async with asyncio.timeout(options.round_timeout):
                await self._propose_and_read()
        except TimeoutError:
            cut = self._cuts.record(self.context.log, self.step, options.round_timeout)
        finally:
            await self._reader.aclose()
        self.candidates.sort(key=lambda c: c.order)
        for candidate in self.candidates:
            candidate.proposers.sort(key=self.context.rank)
        left_out = judge(self.context, self.candidates, self.finished)
        ready = [c.ready_at - started for c in self.candidates if c.log_score is not None]
        timing = RoundTiming(
            step=self.step,
            wall_s=time.perf_counter() - started,
            critical_s=max(ready, default=0.0),
            candidates=len(self.candidates),
            scorers_left_out=left_out,
            cut=cut,
        )
        return RoundOutcome(self.candidates, timing)

    def _check_proposers_left(self) -> None:
        log = self.context.log
        if all(log.is_dropped(t.name) for t in self.context.proposers):
            last = log.records[-1].error if log.records else "no error recorded"
            error = TeachersTimedOutError if log.only_timeouts(self.step - 1) else DecodeError
            raise error(
                f"step {self.step}: every proposer has failed and was dropped "
                f"({', '.join(log.dropped)}); last error: {last}"
            )

    async def _propose_and_read(self) -> None:
        async with asyncio.TaskGroup() as group:
            for beam in self.beams:
                group.create_task(self._beam_round(beam))
            if not self.context.step_mode:
                for finished in self.finished:
                    group.create_task(fill_readings(self._reader, finished))
        # Every proposal is in: each candidate is read by the readers all its proposers leave.
        await gather_or_cancel(*(self._read(candidate) for candidate in self.candidates))

    async def _beam_round(self, beam: Beam) -> None:
        """Every proposer continues one beam."""
        use_routing_key(beam.route)
        proposers = enumerate(self.context.proposers)
        active = [(o, t) for o, t in proposers if not self.context.log.is_dropped(t.name)]
        if self.context.options.seed is None:
            async with asyncio.TaskGroup() as group:
                for order, teacher in active:
                    group.create_task(self._propose_and_read_one(beam, order, teacher))
            return
        proposals = await gather_or_cancel(*(self._propose(beam, t) for _, t in active))
        fresh: list[Candidate] = []
        for (order, teacher), made in zip(active, proposals, strict=True):
            fresh += self._merge(beam, order, teacher, made)
        await gather_or_cancel(*(self._read(c) for c in fresh))

    async def _propose_and_read_one(self, beam: Beam, order: int, teacher: Teacher) -> None:
        proposals = await self._propose(beam, teacher)
        fresh = self._merge(beam, order, teacher, proposals)
        await gather_or_cancel(*(self._read(c) for c in fresh))

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
                )
        except TeacherError as error:
            context.log.proposer_failed(self.step, teacher.name, "propose", error)
            return []
        finally:
            usage.latency_s += time.perf_counter() - started
        context.log.proposer_succeeded(teacher.name)
        context.count_proposals(teacher.name, self.step, proposals)
        return proposals

    def _merge(
        self, beam: Beam, order: int, teacher: Teacher, proposals: Sequence[Proposal]
    ) -> list[Candidate]:
        """New candidates from one teacher's proposals; the same text joins its twin."""
        fresh: list[Candidate] = []
        for index, proposal in enumerate(proposals):
            blank = not proposal.text.strip()
            appended = "" if blank else beam.opening + proposal.text
            tokens = count_tokens(self.context.segmenter.join("", "", appended)) if appended else 0
            closes = self._closing(beam, proposal, tokens)
            if blank and closes is None:
                self.context.log.empty_proposal(self.step, teacher.name)
                continue
            key = (beam.index, normalise_whitespace(proposal.text), closes is not None)
            twin = self._merged.get(key)
            if twin is not None:
                if teacher.name not in twin.proposers:
                    twin.proposers.append(teacher.name)
                twin.order = min(twin.order, (beam.index, order, index))
                continue
            candidate = Candidate(
                (beam.index, order, index), beam, proposal, [teacher.name], closes, appended, tokens
            )
            self._merged[key] = candidate
            self.candidates.append(candidate)
            fresh.append(candidate)
        return fresh

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

    async def _read(self, candidate: Candidate) -> None:
        """Every reader of a candidate reads it; readings already made are not made again."""
        prefix, target, readers = self._question(candidate)

        async def one(model: ScorerModel) -> None:
            part = await self._reader.read(model, prefix, target)
            if part is not None:
                candidate.readings[model.identity] = part
                candidate.ready_at = time.perf_counter()

        await gather_or_cancel(*(one(model) for model in readers))

    def _question(self, candidate: Candidate) -> tuple[str, str, list[ScorerModel]]:
        """The scored context, the scored span and the readers of one candidate."""
        context, beam = self.context, candidate.beam
        if context.reference is not None:
            prefix = beam.text + candidate.appended + context.options.answer_prompt
            candidate.readers = [m.identity for m in context.models]
            return prefix, context.reference, context.models
        proposers = {self._identity[name] for name in candidate.proposers}
        readers, candidate.self_scored = step_readers(context.models, proposers)
        candidate.readers = [m.identity for m in readers]
        target = candidate.body if candidate.appended else THINK_CLOSE
        return beam.text + (beam.opening if candidate.appended else ""), target, readers
