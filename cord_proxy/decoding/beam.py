"""The step beam search: propose with every teacher at once, score on arrival, keep the top B."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from cord_proxy.decoding.candidates import Beam, Candidate, Selection, select_top, step_weight
from cord_proxy.decoding.failures import FailureLog
from cord_proxy.decoding.job import DecodeJob
from cord_proxy.decoding.scoring import (
    as_probability,
    normalised_logprob,
    step_scorers,
    weighted_mean,
)
from cord_proxy.decoding.segment import (
    Segmenter,
    close_thinking,
    reasoning_of,
    segmenter_for,
)
from cord_proxy.decoding.trace import (
    CandidateRecord,
    ClosedBy,
    DecodeResult,
    FinishedTrace,
    RoundTiming,
    ScorerPart,
    StepRecord,
    TeacherUsage,
)
from cord_proxy.errors import (
    CONTEXT_LENGTH_EXCEEDED,
    ContextLengthExceededError,
    CordError,
    DecodeError,
    TeacherError,
    TeachersTimedOutError,
)
from cord_proxy.teachers.affinity import use_routing_key
from cord_proxy.teachers.base import THINK_CLOSE, THINK_OPEN, Proposal, SpanScore, Teacher

Merged = dict[tuple[int, str, bool], Candidate]
TOO_LONG = frozenset({CONTEXT_LENGTH_EXCEEDED})


@dataclass(frozen=True)
class DecodeProgress:
    """Sent after every step: the steps that became certain (shared by every beam)."""

    step: int
    certain_steps: list[StepRecord]
    live_beams: int
    finished_beams: int


ProgressCallback = Callable[[DecodeProgress], None]


def call_seed(seed: int | None, *parts: object) -> int | None:
    """A seed of its own for each call, derived from the request's seed.

    One seed for every call would make same-model teachers draw the same random stream and
    propose the same steps; derived seeds keep a decode reproducible and its proposals varied.
    """
    if seed is None:
        return None
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (2**31)


def normalise_whitespace(text: str) -> str:
    return " ".join(text.split())


class BeamSearch:
    """One decode. Create, `await run()`, read the result. Cancelling `run` cancels every call.

    With a seed, the result does not depend on the order in which answers arrive: each
    beam's proposals are merged in (teacher order in the ensemble, proposal index) order,
    ties are broken by (beam, teacher, proposal), and the answer teacher is chosen the same way.
    """

    def __init__(self, job: DecodeJob, on_progress: ProgressCallback | None = None):
        self.conversation = list(job.conversation)
        self.proposers = list(job.proposers)
        self.scorers = list(job.scorers)
        self.options = options = job.options
        self.reference = job.reference_answer
        self.step_mode = job.reference_answer is None
        self.weights = dict(job.scorer_weights)
        self.on_progress = on_progress
        self.segmenter: Segmenter = segmenter_for(options)
        self.usage = {t.name: TeacherUsage(name=t.name) for t in [*job.proposers, *job.scorers]}
        self.log = FailureLog(self.usage)
        self.rounds: list[RoundTiming] = []
        self._rank = {t.name: i for i, t in enumerate(self.proposers)}
        self._round_scores: dict[tuple[str, str, str], asyncio.Task[SpanScore | None]] = {}
        self._cancelled_calls: list[tuple[str, str]] = []
        self._certain = 0
        self._prompt_tokens = 0
        self._decode_key = uuid.uuid4().hex[:12]
        self._routes = itertools.count()

    async def run(self) -> DecodeResult:
        started = time.perf_counter()
        try:
            survivors, alternatives, answer_wait = await self._search()
        except* CordError as failed:
            # `_search` raises "no candidate survived" inside its TaskGroup, which wraps it in
            # an ExceptionGroup (after cancelling the answers in flight): raise it bare.
            raise failed.exceptions[0] from None
        finally:
            self._end_round_scores()
        return DecodeResult(
            traces=_best_first(survivors) + _best_first(alternatives),
            score_mode="step" if self.step_mode else "reference",
            reference_used=not self.step_mode,
            prompt_tokens=self._prompt_tokens,
            teachers=list(self.usage.values()),
            failures=self.log.records,
            dropped=self.log.dropped,
            rounds=self.rounds,
            wall_s=time.perf_counter() - started,
            answer_wait_s=answer_wait,
        )

    async def _search(self) -> tuple[list[FinishedTrace], list[FinishedTrace], float]:
        first = Beam(0, THINK_OPEN, self.segmenter.opening(1), [], 0, 0.0, 1, route=self._route())
        live = [first]
        finished: list[Beam] = []
        answers: dict[int, asyncio.Task[FinishedTrace | None]] = {}
        async with asyncio.TaskGroup() as group:
            for step in range(1, self.options.max_steps + 1):
                if not live:
                    break
                try:
                    selection, records = await self._step(step, live, finished)
                except DecodeError:
                    if not answers:
                        raise
                    live = []
                    break
                live, newly = self._advance(selection, records)
                finished = [*selection.kept, *newly]
                answers.update({id(b): group.create_task(self._answer(b)) for b in newly})
                self._report(step, live, finished)
            leftovers = [self._close(beam, "max_steps") for beam in live]
            answers.update({id(b): group.create_task(self._answer(b)) for b in leftovers})
            search_done = time.perf_counter()
        final = {id(b) for b in [*finished, *leftovers]}
        traces = {key: t for key, task in answers.items() if (t := task.result()) is not None}
        survivors = [t for key, t in traces.items() if key in final]
        alternatives = [t for key, t in traces.items() if key not in final]
        if not traces:
            raise DecodeError(
                "no teacher could write the final answer of any finished trace: "
                + self.log.role_errors("answer")
            )
        return survivors, alternatives, time.perf_counter() - search_done

    async def _step(
        self, step: int, live: list[Beam], finished: list[Beam]
    ) -> tuple[Selection, list[CandidateRecord] | None]:
        """One round and its top B, with every candidate's record when they are asked for."""
        candidates = await self._round(step, live)
        if step == 1 and candidates and all(c.proposal.context_full for c in candidates):
            raise ContextLengthExceededError(
                "the messages leave no room in any proposer's context; shorten them",
                param="messages",
            )
        selection = select_top(candidates, finished, self.options.beam_width, self.step_mode)
        if not selection.chosen and not selection.kept:
            raise self._nothing_survived(step)
        if not self.options.include_candidates:
            return selection, None
        chosen = {id(c) for c in selection.chosen}
        return selection, [c.record(selected=id(c) in chosen) for c in candidates]

    def _nothing_survived(self, step: int) -> CordError:
        """Why no candidate survived: the client's input, timeouts, or failing teachers."""
        if step == 1 and self.log.only_codes(step, TOO_LONG):
            param = "messages" if self.step_mode else "cord.reference_answer"
            return ContextLengthExceededError(
                f"the scored prompt is longer than every scorer's context ({param}); "
                + self.log.step_errors(step),
                param=param,
            )
        error = TeachersTimedOutError if self.log.only_timeouts(step) else DecodeError
        return error(f"step {step}: no candidate survived ({self.log.step_errors(step)})")

    # --- one round: propose and score, within the round's deadline -------------------------

    async def _round(self, step: int, beams: Sequence[Beam]) -> list[Candidate]:
        started = time.perf_counter()
        candidates: list[Candidate] = []
        merged: Merged = {}
        self._check_proposers_left(step)
        cut: list[str] = []
        try:
            async with asyncio.timeout(self.options.round_timeout):
                async with asyncio.TaskGroup() as group:
                    for beam in beams:
                        group.create_task(self._beam_round(step, beam, candidates, merged))
        except TimeoutError:
            cut = self._record_cuts(step)
        candidates.sort(key=lambda c: c.order)
        left_out = self._left_out(candidates)
        for candidate in candidates:
            candidate.proposers.sort(key=self._rank.__getitem__)
            self._rejudge(candidate, left_out)
        self._end_round_scores()
        ready = [c.ready_at - started for c in candidates if c.log_score is not None]
        self.rounds.append(
            RoundTiming(
                step=step,
                wall_s=time.perf_counter() - started,
                critical_s=max(ready, default=0.0),
                candidates=len(candidates),
                scorers_left_out=left_out,
                cut=cut,
            )
        )
        return candidates

    def _check_proposers_left(self, step: int) -> None:
        if all(self.log.is_dropped(t.name) for t in self.proposers):
            last = self.log.records[-1].error if self.log.records else "no error recorded"
            error = TeachersTimedOutError if self.log.only_timeouts(step - 1) else DecodeError
            raise error(
                f"step {step}: every proposer has failed and was dropped "
                f"({', '.join(self.log.dropped)}); last error: {last}"
            )

    def _record_cuts(self, step: int) -> list[str]:
        """Record the calls the round deadline cancelled; the round goes on without them."""
        cut = list(dict.fromkeys(self._cancelled_calls))
        self._cancelled_calls.clear()
        for teacher, role in cut:
            self.log.cut(step, teacher, role, self.options.round_timeout)
        return sorted({teacher for teacher, _ in cut})

    @contextlib.contextmanager
    def _call(self, teacher: str, role: str) -> Iterator[None]:
        """Notes a call that is cancelled (by the round deadline, or the client leaving)."""
        try:
            yield
        except asyncio.CancelledError:
            self._cancelled_calls.append((teacher, role))
            raise

    async def _beam_round(
        self, step: int, beam: Beam, candidates: list[Candidate], merged: Merged
    ) -> None:
        """Every proposer continues one beam. Seeded: merged in teacher order, then scored."""
        use_routing_key(beam.route)
        active = [(o, t) for o, t in enumerate(self.proposers) if not self.log.is_dropped(t.name)]
        if self.options.seed is None:
            async with asyncio.TaskGroup() as group:
                for order, teacher in active:
                    group.create_task(
                        self._propose_and_score(step, beam, order, teacher, candidates, merged)
                    )
            return
        proposals = await asyncio.gather(*(self._propose(step, beam, t) for _, t in active))
        fresh: list[Candidate] = []
        for (order, teacher), made in zip(active, proposals, strict=True):
            fresh += self._merge(beam, order, teacher, made, candidates, merged)
        await asyncio.gather(*(self._score(step, c) for c in fresh))

    async def _propose_and_score(
        self,
        step: int,
        beam: Beam,
        order: int,
        teacher: Teacher,
        candidates: list[Candidate],
        merged: Merged,
    ) -> None:
        proposals = await self._propose(step, beam, teacher)
        fresh = self._merge(beam, order, teacher, proposals, candidates, merged)
        await asyncio.gather(*(self._score(step, c) for c in fresh))

    def _merge(
        self,
        beam: Beam,
        order: int,
        teacher: Teacher,
        proposals: Sequence[Proposal],
        candidates: list[Candidate],
        merged: Merged,
    ) -> list[Candidate]:
        """New candidates from one teacher's proposals; the same text joins its twin."""
        fresh: list[Candidate] = []
        for index, proposal in enumerate(proposals):
            closes = self._closing(beam, proposal)
            if not proposal.text.strip() and closes is None:
                continue
            key = (beam.index, normalise_whitespace(proposal.text), closes is not None)
            twin = merged.get(key)
            if twin is not None:
                if teacher.name not in twin.proposers:
                    twin.proposers.append(teacher.name)
                twin.order = min(twin.order, (beam.index, order, index))
                continue
            candidate = Candidate(
                (beam.index, order, index), beam, proposal, [teacher.name], closes
            )
            merged[key] = candidate
            candidates.append(candidate)
            fresh.append(candidate)
        return fresh

    async def _propose(self, step: int, beam: Beam, teacher: Teacher) -> list[Proposal]:
        options = self.options
        started = time.perf_counter()
        usage = self.usage[teacher.name]
        usage.propose_calls += 1
        try:
            with self._call(teacher.name, "propose"):
                proposals = await teacher.propose(
                    self.conversation,
                    beam.text + beam.opening,
                    n=options.proposals_per_teacher,
                    stop=self.segmenter.stop_strings,
                    max_tokens=min(options.max_step_tokens, options.thinking_budget - beam.tokens),
                    seed=call_seed(options.seed, teacher.name, step, beam.index),
                    temperature=options.temperature,
                    top_p=options.top_p,
                    reserve=options.answer_budget,
                )
        except TeacherError as error:
            self.log.proposer_failed(step, teacher.name, "propose", error)
            return []
        finally:
            usage.latency_s += time.perf_counter() - started
        self.log.proposer_succeeded(teacher.name)
        self._count_proposals(step, usage, proposals)
        return proposals

    def _count_proposals(self, step: int, usage: TeacherUsage, proposals: list[Proposal]) -> None:
        usage.proposals += len(proposals)
        usage.completion_tokens += sum(p.tokens for p in proposals)
        usage.prompt_tokens += sum(p.prompt_tokens for p in proposals)
        usage.cost_usd += sum(p.cost_usd for p in proposals)
        if step == 1:
            seen = [p.prompt_tokens for p in proposals if p.prompt_tokens > 0]
            if seen and (self._prompt_tokens == 0 or min(seen) < self._prompt_tokens):
                self._prompt_tokens = min(seen)

    def _closing(self, beam: Beam, proposal: Proposal) -> ClosedBy | None:
        if proposal.stop_string == THINK_CLOSE:
            return "think"
        if proposal.context_full:
            return "context"
        if proposal.finish_reason == "closed":
            return "eos"
        if beam.tokens + proposal.tokens >= self.options.thinking_budget:
            return "budget"
        return None

    # --- scoring --------------------------------------------------------------------------

    async def _score(self, step: int, candidate: Candidate) -> None:
        prefix, target, names = self._score_question(candidate)
        # Eq. 3 is the per-token mean; per-byte normalisation is for step mode only.
        normalisation = self.options.score_normalisation if self.step_mode else "token"
        # A scorer is missing until its part arrives: one cut at the round deadline stays
        # missing, and the parts that did arrive are kept (`_left_out`).
        candidate.missing.update(names)
        arrived: dict[str, ScorerPart] = {}

        async def one(name: str) -> None:
            span = await self._span(step, self._scorer(name), prefix, target)
            if span is None:
                return
            arrived[name] = ScorerPart(
                scorer=name,
                mean_logprob=normalised_logprob(span.logprobs, target, normalisation),
                tokens=len(span.logprobs),
                weight=self.weights.get(name, 1.0),
                method=span.method,
            )
            candidate.missing.discard(name)
            candidate.parts = [arrived[n] for n in names if n in arrived]
            candidate.log_score = _combined(candidate.parts)
            candidate.ready_at = time.perf_counter()

        await asyncio.gather(*(one(name) for name in names))

    def _score_question(self, candidate: Candidate) -> tuple[str, str, list[str]]:
        """The scored context, the scored span and the scorers of one candidate."""
        beam = candidate.beam
        names = [s.name for s in self.scorers]
        if self.reference is not None:
            prefix = beam.text + beam.opening + candidate.body + self.options.answer_prompt
            return prefix, self.reference, names
        target = candidate.body if candidate.body.strip() else THINK_CLOSE
        return beam.text + beam.opening, target, step_scorers(names, candidate.proposers)

    def _scorer(self, name: str) -> Teacher:
        return next(s for s in self.scorers if s.name == name)

    async def _span(self, step: int, scorer: Teacher, prefix: str, target: str) -> SpanScore | None:
        """One scorer's reading of a span, or None when its endpoint failed or is retired.

        Teachers that share an endpoint, model and prompt format share one call per round.
        """
        if not self.log.can_score(scorer):
            return None
        key = (scorer.score_identity, prefix, target)
        task = self._round_scores.get(key)
        if task is None:
            task = asyncio.ensure_future(self._shared_span(step, scorer, prefix, target))
            self._round_scores[key] = task
        with self._call(scorer.name, "score"):
            return await asyncio.shield(task)

    async def _shared_span(
        self, step: int, scorer: Teacher, prefix: str, target: str
    ) -> SpanScore | None:
        """The call behind `_span`: counted, and its failure recorded, once."""
        usage = self.usage[scorer.name]
        usage.score_calls += 1
        try:
            span = await scorer.score(self.conversation, prefix, target)
        except TeacherError as error:
            self.log.scorer_failed(step, scorer, error)
            return None
        self.log.scorer_succeeded(scorer)
        if not span.logprobs:
            return None
        usage.score_tokens += span.context_tokens + len(span.logprobs)
        return span

    @staticmethod
    def _left_out(candidates: Sequence[Candidate]) -> list[str]:
        """The scorers that failed on some candidate of the round, to leave out for all.

        When that would leave no scorer at all, none is left out: the candidates a scorer
        failed on go unranked instead, and the rest keep the same, full set of judges.
        """
        failed = set().union(*(c.missing for c in candidates))
        judging = {p.scorer for c in candidates for p in c.parts}
        if failed and not judging - failed:
            for candidate in candidates:
                if candidate.missing:
                    candidate.parts, candidate.log_score = [], None
            return []
        return sorted(failed)

    def _rejudge(self, candidate: Candidate, left_out: Sequence[str]) -> None:
        """Rank every candidate of a round by the same scorers.

        The round's failed scorers are left out of every candidate. In step mode a merged
        candidate's later proposers may have scored it: those parts go too.
        """
        excluded = set(left_out)
        if self.step_mode:
            excluded.update(candidate.proposers)
        kept = [p for p in candidate.parts if p.scorer not in excluded]
        if len(kept) == len(candidate.parts):
            return
        if self.step_mode and not kept and not left_out:
            return  # a lone teacher scores its own proposals (scoring.step_scorers)
        candidate.parts = kept
        candidate.log_score = _combined(kept) if kept else None

    def _end_round_scores(self) -> None:
        """Score state lives for one round: free it, and cancel what is still running."""
        for task in self._round_scores.values():
            task.cancel()
        self._round_scores.clear()

    # --- selection and the final answer ---------------------------------------------------

    def _advance(
        self, selection: Selection, records: list[CandidateRecord] | None
    ) -> tuple[list[Beam], list[Beam]]:
        """The chosen candidates as beams: still thinking, and newly finished."""
        live: list[Beam] = []
        done: list[Beam] = []
        taken: set[str] = set()
        for index, candidate in enumerate(selection.chosen):
            for name in candidate.proposers:
                self.usage[name].selected += 1
            beam = self._extend(index, candidate, records)
            # The best child keeps its parent's key (and replica, whose cache holds the
            # parent's trace); every other child starts a key of its own.
            route = candidate.beam.route
            beam.route = route if route not in taken else self._route()
            taken.add(beam.route)
            (done if beam.closed_by else live).append(beam)
        return live, done

    def _route(self) -> str:
        return f"{self._decode_key}-{next(self._routes)}"

    def _extend(
        self, index: int, candidate: Candidate, records: list[CandidateRecord] | None
    ) -> Beam:
        parent = candidate.beam
        step_score = candidate.log_score if candidate.log_score is not None else float("-inf")
        text = self.segmenter.join(parent.text, parent.opening, candidate.body)
        record = StepRecord(
            index=parent.step_number,
            text=text[len(parent.text) :],
            proposers=list(candidate.proposers),
            score=as_probability(step_score),
            log_score=step_score,
            scorers=candidate.parts,
            tokens=candidate.proposal.tokens,
            candidates=records,
        )
        weight = step_weight(candidate.proposal)
        trace_score = candidate.trace_score(self.step_mode)
        beam = Beam(
            index=index,
            text=text,
            opening=self.segmenter.opening(parent.step_number + 1, candidate.proposal),
            steps=[*parent.steps, record],
            tokens=parent.tokens + candidate.proposal.tokens,
            log_score=step_score if trace_score is None else trace_score,
            step_number=parent.step_number + 1,
            weighted_sum=parent.weighted_sum + step_score * weight,
            weight=parent.weight + weight,
        )
        return self._close(beam, candidate.closes) if candidate.closes else beam

    @staticmethod
    def _close(beam: Beam, reason: ClosedBy) -> Beam:
        beam.text = close_thinking(beam.text)
        beam.closed_by = reason
        return beam

    async def _answer(self, beam: Beam) -> FinishedTrace | None:
        """The final answer, written by the teacher of the last step (others if it fails)."""
        use_routing_key(beam.route)
        last = beam.steps[-1].proposers[0] if beam.steps else self.proposers[0].name
        ordered = sorted(
            (t for t in self.proposers if not self.log.is_dropped(t.name)),
            key=lambda t: t.name != last,
        )
        for teacher in ordered:
            try:
                proposals = await teacher.propose(
                    self.conversation,
                    beam.text + "\n\n",
                    n=1,
                    stop=self.options.answer_stop,
                    max_tokens=self.options.answer_budget,
                    seed=call_seed(self.options.seed, teacher.name, "answer", beam.index),
                    temperature=self.options.temperature,
                    top_p=self.options.top_p,
                )
            except TeacherError as error:
                self.log.proposer_failed(len(beam.steps), teacher.name, "answer", error)
                continue
            self.log.proposer_succeeded(teacher.name)
            self._count_proposals(0, self.usage[teacher.name], proposals)
            if proposals:
                return self._finished(beam, teacher.name, proposals[0])
        return None

    @staticmethod
    def _finished(beam: Beam, teacher: str, answer: Proposal) -> FinishedTrace:
        assert beam.closed_by is not None
        return FinishedTrace(
            reasoning=reasoning_of(beam.steps),
            answer=answer.text.strip(),
            steps=beam.steps,
            score=as_probability(beam.log_score),
            log_score=beam.log_score,
            closed_by=beam.closed_by,
            answer_teacher=teacher,
            answer_finish_reason="length" if answer.finish_reason == "length" else "stop",
            reasoning_tokens=beam.tokens,
            answer_tokens=answer.tokens,
        )

    def _report(self, step: int, live: list[Beam], finished: list[Beam]) -> None:
        beams = [*live, *finished]
        shared = 0
        while all(len(b.steps) > shared for b in beams) and all(
            b.steps[shared] is beams[0].steps[shared] for b in beams
        ):
            shared += 1
        new = beams[0].steps[self._certain : shared] if beams else []
        self._certain = max(self._certain, shared)
        if self.on_progress is not None:
            self.on_progress(DecodeProgress(step, list(new), len(live), len(finished)))


def _combined(parts: Sequence[ScorerPart]) -> float:
    return weighted_mean([p.mean_logprob for p in parts], [p.weight for p in parts])


def _best_first(traces: list[FinishedTrace]) -> list[FinishedTrace]:
    return sorted(traces, key=lambda t: -t.log_score)
