"""The step beam search: propose with every teacher at once, score on arrival, keep the top B."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from cord_proxy.decoding.options import DecodeOptions
from cord_proxy.decoding.scoring import (
    as_probability,
    normalised_logprob,
    step_scorers,
    weighted_mean,
)
from cord_proxy.decoding.segment import (
    THINK_CLOSE,
    THINK_OPEN,
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
    StepFailure,
    StepRecord,
    TeacherUsage,
)
from cord_proxy.errors import DecodeError, TeacherError
from cord_proxy.teachers.base import Message, Proposal, SpanScore, Teacher

# A teacher whose calls fail this often in one request (each call after its own retries,
# teachers/retry.py) is dropped for the rest of the request: it is sent no more calls of any
# kind, and `DecodeResult.dropped` names it. The answer is degraded, not failed; when every
# proposer is dropped, the decode fails with `DecodeError` (502).
DROP_AFTER_FAILURES = 2


@dataclass(frozen=True)
class DecodeProgress:
    """Sent after every step: the steps that became certain (shared by every beam)."""

    step: int
    certain_steps: list[StepRecord]
    live_beams: int
    finished_beams: int


ProgressCallback = Callable[[DecodeProgress], None]


@dataclass
class Beam:
    index: int
    text: str
    opening: str
    steps: list[StepRecord]
    tokens: int
    log_score: float
    step_number: int
    closed_by: ClosedBy | None = None


@dataclass
class Candidate:
    order: tuple[int, int, int]
    beam: Beam
    proposal: Proposal
    proposers: list[str]
    closes: ClosedBy | None
    parts: list[ScorerPart] = field(default_factory=list)
    missing: set[str] = field(default_factory=set)
    log_score: float | None = None
    ready_at: float = 0.0

    @property
    def body(self) -> str:
        return self.proposal.text

    def record(self, selected: bool) -> CandidateRecord:
        log_score = self.log_score if self.log_score is not None else float("-inf")
        return CandidateRecord(
            parent=self.beam.index,
            text=self.beam.opening + self.body,
            proposers=list(self.proposers),
            score=as_probability(log_score),
            log_score=log_score,
            scorers=self.parts,
            tokens=self.proposal.tokens,
            finish_reason=self.proposal.finish_reason,
            selected=selected,
        )


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


def select_top(candidates: Sequence[Candidate], capacity: int) -> list[Candidate]:
    """The `capacity` best scored candidates; ties keep the proposal order."""
    scored = [c for c in candidates if c.log_score is not None]
    return sorted(scored, key=lambda c: (-(c.log_score or 0.0), c.order))[:capacity]


class BeamSearch:
    """One decode. Create, `await run()`, read the result. Cancelling `run` cancels every call."""

    def __init__(
        self,
        conversation: Sequence[Message],
        proposers: Sequence[Teacher],
        scorers: Sequence[Teacher],
        options: DecodeOptions,
        *,
        reference_answer: str | None = None,
        scorer_weights: Mapping[str, float] | None = None,
        on_progress: ProgressCallback | None = None,
    ):
        self.conversation = list(conversation)
        self.proposers = list(proposers)
        self.scorers = list(scorers)
        self.options = options
        self.reference = reference_answer
        self.weights = dict(scorer_weights or {})
        self.on_progress = on_progress
        self.segmenter: Segmenter = segmenter_for(options)
        self.usage = {t.name: TeacherUsage(name=t.name) for t in [*proposers, *scorers]}
        self.failures: list[StepFailure] = []
        self.dropped: list[str] = []
        self.rounds: list[RoundTiming] = []
        self._round_scores: dict[tuple[str, str, str], asyncio.Task[SpanScore | None]] = {}
        self._score_strikes: dict[str, int] = {}
        self._certain = 0
        self._prompt_tokens = 0

    async def run(self) -> DecodeResult:
        started = time.perf_counter()
        try:
            traces, answer_wait = await self._search()
        except* DecodeError as failed:
            # `_search` raises "no candidate survived" inside its TaskGroup, which wraps it in
            # an ExceptionGroup (after cancelling the answers in flight): raise it bare.
            raise failed.exceptions[0] from None
        finally:
            self._end_round_scores()
        return DecodeResult(
            traces=sorted(traces, key=lambda t: -t.log_score),
            score_mode="reference" if self.reference is not None else "step",
            reference_used=self.reference is not None,
            prompt_tokens=self._prompt_tokens,
            teachers=list(self.usage.values()),
            failures=self.failures,
            dropped=self.dropped,
            rounds=self.rounds,
            wall_s=time.perf_counter() - started,
            answer_wait_s=answer_wait,
        )

    async def _search(self) -> tuple[list[FinishedTrace], float]:
        live = [Beam(0, THINK_OPEN, self.segmenter.opening(1), [], 0, 0.0, 1)]
        finished: list[Beam] = []
        answers: list[asyncio.Task[FinishedTrace | None]] = []
        async with asyncio.TaskGroup() as group:
            for step in range(1, self.options.max_steps + 1):
                if not live:
                    break
                try:
                    candidates = await self._round(step, live)
                    live, done = self._select(
                        step, candidates, self.options.beam_width - len(finished)
                    )
                except DecodeError:
                    if not finished:
                        raise
                    live = []
                    break
                finished += done
                answers += [group.create_task(self._answer(beam)) for beam in done]
                self._report(step, live, finished)
            leftovers = [self._close(beam, "max_steps") for beam in live]
            answers += [group.create_task(self._answer(beam)) for beam in leftovers]
            search_done = time.perf_counter()
        traces = [trace for task in answers if (trace := task.result()) is not None]
        if not traces:
            raise DecodeError("no teacher could write the final answer of any finished trace")
        return traces, time.perf_counter() - search_done

    async def _round(self, step: int, beams: Sequence[Beam]) -> list[Candidate]:
        started = time.perf_counter()
        candidates: list[Candidate] = []
        merged: dict[tuple[int, str, bool], Candidate] = {}
        if all(t.name in self.dropped for t in self.proposers):
            last = self.failures[-1].error if self.failures else "no error recorded"
            raise DecodeError(
                f"step {step}: every proposer has failed and was dropped "
                f"({', '.join(self.dropped)}); last error: {last}"
            )
        async with asyncio.TaskGroup() as group:
            for beam in beams:
                for order, teacher in enumerate(self.proposers):
                    if teacher.name in self.dropped:
                        continue
                    group.create_task(
                        self._propose_and_score(step, beam, order, teacher, candidates, merged)
                    )
        left_out = self._left_out(candidates)
        for candidate in candidates:
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
            )
        )
        return candidates

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
        if self.reference is None:
            excluded.update(candidate.proposers)
        kept = [p for p in candidate.parts if p.scorer not in excluded]
        if len(kept) == len(candidate.parts):
            return
        if self.reference is None and not kept and not left_out:
            return  # a lone teacher scores its own proposals (scoring.step_scorers)
        candidate.parts = kept
        candidate.log_score = (
            weighted_mean([p.mean_logprob for p in kept], [p.weight for p in kept])
            if kept
            else None
        )

    def _end_round_scores(self) -> None:
        """Score state lives for one round: free it, and cancel what is still running."""
        for task in self._round_scores.values():
            task.cancel()
        self._round_scores.clear()

    async def _propose_and_score(
        self,
        step: int,
        beam: Beam,
        order: int,
        teacher: Teacher,
        candidates: list[Candidate],
        merged: dict[tuple[int, str, bool], Candidate],
    ) -> None:
        proposals = await self._propose(step, beam, teacher)
        fresh: list[Candidate] = []
        for index, proposal in enumerate(proposals):
            closes = self._closing(beam, proposal)
            if not proposal.text.strip() and closes is None:
                continue
            key = (beam.index, normalise_whitespace(proposal.text), closes is not None)
            if key in merged:
                if teacher.name not in merged[key].proposers:
                    merged[key].proposers.append(teacher.name)
                continue
            candidate = Candidate(
                (beam.index, order, index), beam, proposal, [teacher.name], closes
            )
            merged[key] = candidate
            candidates.append(candidate)
            fresh.append(candidate)
        await asyncio.gather(*(self._score(step, c) for c in fresh))

    async def _propose(self, step: int, beam: Beam, teacher: Teacher) -> list[Proposal]:
        options = self.options
        started = time.perf_counter()
        usage = self.usage[teacher.name]
        usage.propose_calls += 1
        try:
            proposals = await teacher.propose(
                self.conversation,
                beam.text + beam.opening,
                n=options.proposals_per_teacher,
                stop=self.segmenter.stop_strings,
                max_tokens=min(options.max_step_tokens, options.thinking_budget - beam.tokens),
                seed=call_seed(options.seed, teacher.name, step, beam.index),
                temperature=options.temperature,
            )
        except TeacherError as error:
            self._fail(step, teacher.name, "propose", error)
            return []
        finally:
            usage.latency_s += time.perf_counter() - started
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
        if proposal.finish_reason == "closed":
            return "eos"
        if beam.tokens + proposal.tokens >= self.options.thinking_budget:
            return "budget"
        return None

    async def _score(self, step: int, candidate: Candidate) -> None:
        prefix, target, names = self._score_question(candidate)
        # Eq. 3 is the per-token mean; per-byte normalisation is for step mode only.
        normalisation = self.options.score_normalisation if self.reference is None else "token"
        parts: list[ScorerPart] = []
        for name, span in zip(
            names,
            await asyncio.gather(
                *(self._span(step, self._scorer(n), prefix, target) for n in names)
            ),
            strict=True,
        ):
            if span is None:
                candidate.missing.add(name)
                continue
            parts.append(
                ScorerPart(
                    scorer=name,
                    mean_logprob=normalised_logprob(span.logprobs, target, normalisation),
                    tokens=len(span.logprobs),
                    weight=self.weights.get(name, 1.0),
                    method=span.method,
                )
            )
        if parts:
            candidate.parts = parts
            candidate.log_score = weighted_mean(
                [p.mean_logprob for p in parts], [p.weight for p in parts]
            )
        candidate.ready_at = time.perf_counter()

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
        identity = scorer.score_identity
        retired = self._score_strikes.get(identity, 0) >= DROP_AFTER_FAILURES
        if retired or scorer.name in self.dropped:
            return None
        key = (identity, prefix, target)
        task = self._round_scores.get(key)
        if task is None:
            task = asyncio.ensure_future(self._shared_span(step, scorer, prefix, target))
            self._round_scores[key] = task
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
            self._fail_score(step, scorer, error)
            return None
        self._score_strikes[scorer.score_identity] = 0
        if not span.logprobs:
            return None
        usage.score_tokens += span.context_tokens + len(span.logprobs)
        return span

    def _select(
        self, step: int, candidates: list[Candidate], capacity: int
    ) -> tuple[list[Beam], list[Beam]]:
        chosen = select_top(candidates, capacity)
        if not chosen:
            reasons = "; ".join(f.error for f in self.failures if f.step == step) or "no proposal"
            raise DecodeError(f"step {step}: no candidate survived ({reasons})")
        records = None
        if self.options.include_candidates:
            records = [c.record(selected=c in chosen) for c in candidates]
        live: list[Beam] = []
        done: list[Beam] = []
        for index, candidate in enumerate(chosen):
            for name in candidate.proposers:
                self.usage[name].selected += 1
            beam = self._extend(index, candidate, records)
            (done if beam.closed_by else live).append(beam)
        return live, done

    def _extend(
        self, index: int, candidate: Candidate, records: list[CandidateRecord] | None
    ) -> Beam:
        parent = candidate.beam
        log_score = candidate.log_score if candidate.log_score is not None else float("-inf")
        text = self.segmenter.join(parent.text, parent.opening, candidate.body)
        record = StepRecord(
            index=parent.step_number,
            text=text[len(parent.text) :],
            proposers=list(candidate.proposers),
            score=as_probability(log_score),
            log_score=log_score,
            scorers=candidate.parts,
            tokens=candidate.proposal.tokens,
            candidates=records,
        )
        beam = Beam(
            index=index,
            text=text,
            opening=self.segmenter.opening(parent.step_number + 1, candidate.proposal),
            steps=[*parent.steps, record],
            tokens=parent.tokens + candidate.proposal.tokens,
            log_score=log_score,
            step_number=parent.step_number + 1,
        )
        return self._close(beam, candidate.closes) if candidate.closes else beam

    @staticmethod
    def _close(beam: Beam, reason: ClosedBy) -> Beam:
        beam.text = close_thinking(beam.text)
        beam.closed_by = reason
        return beam

    async def _answer(self, beam: Beam) -> FinishedTrace | None:
        """The final answer, written by the teacher of the last step (others if it fails)."""
        last = beam.steps[-1].proposers[0] if beam.steps else self.proposers[0].name
        ordered = sorted(
            (t for t in self.proposers if t.name not in self.dropped), key=lambda t: t.name != last
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
                )
            except TeacherError as error:
                self._fail(len(beam.steps), teacher.name, "answer", error)
                continue
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

    def _fail(self, step: int, teacher: str, role: str, error: TeacherError) -> None:
        """Record a failed call; a teacher failing `DROP_AFTER_FAILURES` times is dropped."""
        usage = self.usage[teacher]
        usage.failures += 1
        self.failures.append(
            StepFailure.model_validate(
                {"step": step, "teacher": teacher, "role": role, "error": error.message}
            )
        )
        if usage.failures >= DROP_AFTER_FAILURES and teacher not in self.dropped:
            self.dropped.append(teacher)

    def _fail_score(self, step: int, scorer: Teacher, error: TeacherError) -> None:
        """A failed scoring call counts once, against its endpoint; it never drops a proposer.

        An endpoint whose scoring calls fail `DROP_AFTER_FAILURES` times in a row scores no
        more in this decode.
        """
        self.usage[scorer.name].failures += 1
        self.failures.append(
            StepFailure.model_validate(
                {"step": step, "teacher": scorer.name, "role": "score", "error": error.message}
            )
        )
        identity = scorer.score_identity
        self._score_strikes[identity] = self._score_strikes.get(identity, 0) + 1

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
