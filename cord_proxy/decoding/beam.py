"""The step beam search (docs/method.md, "The loop"): propose with every teacher at once, score
on equal terms, keep the top B, answer each finished trace, return them all, best first."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cord_proxy.decoding.answers import Answered, Answers
from cord_proxy.decoding.candidates import Beam, Candidate, Selection, select_top, step_weight
from cord_proxy.decoding.context import DecodeContext, untrainable
from cord_proxy.decoding.failures import FailureLog
from cord_proxy.decoding.job import DecodeJob
from cord_proxy.decoding.ranking import compare_finished
from cord_proxy.decoding.round import Round
from cord_proxy.decoding.scorers import scorer_models
from cord_proxy.decoding.scoring import as_probability
from cord_proxy.decoding.segment import close_thinking, reasoning_of, segmenter_for
from cord_proxy.decoding.tokens import load_encoding
from cord_proxy.decoding.trace import (
    CandidateRecord,
    ClosedBy,
    DecodeResult,
    FinishedTrace,
    RoundTiming,
    SearchRound,
    StepRecord,
    TeacherUsage,
)
from cord_proxy.errors import (
    CONTEXT_LENGTH_EXCEEDED,
    TEACHER_REFUSED,
    ContextLengthExceededError,
    CordError,
    DecodeError,
    InvalidRequestError,
    TeachersTimedOutError,
)
from cord_proxy.teachers.base import THINK_OPEN

TOO_LONG = frozenset({CONTEXT_LENGTH_EXCEEDED})
REFUSED = frozenset({TEACHER_REFUSED})


@dataclass(frozen=True)
class DecodeProgress:
    """Sent after every step: the steps that became certain (shared by every beam)."""

    step: int
    certain_steps: list[StepRecord]
    live_beams: int
    finished_beams: int


ProgressCallback = Callable[[DecodeProgress], None]


class BeamSearch:
    """One decode. Create, `await run()`, read the result. Cancelling `run` cancels every call.

    With a seed, the result does not depend on the order in which answers arrive: each
    beam's proposals are merged in (teacher order in the ensemble, proposal index) order,
    ties are broken by (beam, teacher, proposal), and the answer teacher is chosen the same way.
    """

    def __init__(self, job: DecodeJob, on_progress: ProgressCallback | None = None):
        usage = {t.name: TeacherUsage(name=t.name) for t in [*job.proposers, *job.scorers]}
        self.context = DecodeContext(
            conversation=list(job.conversation),
            proposers=list(job.proposers),
            models=scorer_models(job.scorers, job.scorer_weights),
            options=job.options,
            reference=job.reference_answer,
            segmenter=segmenter_for(job.options),
            usage=usage,
            log=FailureLog(usage),
            prices=job.prices,
            extras=job.extras,
            untrainable=untrainable(job.proposers),
        )
        self.recorded = dict(job.recorded)
        self.on_progress = on_progress
        self.rounds: list[RoundTiming] = []
        self.search: list[SearchRound] = []
        self._certain = 0
        self._decode_key = uuid.uuid4().hex[:12]
        self._routes = itertools.count()

    async def run(self) -> DecodeResult:
        started = time.perf_counter()
        await load_encoding()
        try:
            answered, answer_wait = await self._search()
        except* CordError as failed:
            # `_search` raises "no candidate survived" inside its TaskGroup, which wraps it in
            # an ExceptionGroup (after cancelling the answers in flight): raise it bare.
            raise failed.exceptions[0] from None
        context = self.context
        await compare_finished(context, [a.beam for a in answered], len(self.rounds))
        return DecodeResult(
            traces=_best_first([_finished(a, context.untrainable) for a in answered]),
            score_mode="step" if context.step_mode else "reference",
            reference_used=not context.step_mode,
            prompt_tokens=context.prompt_tokens,
            teachers=context.priced_usage(),
            failures=context.log.records,
            dropped=context.log.dropped,
            rounds=self.rounds,
            wall_s=time.perf_counter() - started,
            answer_wait_s=answer_wait,
            thinking_budget=context.options.thinking_budget,
            answer_budget=context.options.answer_budget,
            recorded=self.recorded,
            search=self.search,
            include_candidates=context.options.include_candidates,
        )

    async def _search(self) -> tuple[list[Answered], float]:
        opening = self.context.segmenter.opening(1)
        live = [Beam(0, THINK_OPEN, opening, [], 0, 0.0, 1, route=self._route())]
        finished: list[Beam] = []  # the finished traces that hold a slot in the beam
        ended: list[Beam] = []  # every finished trace: each may be the best at the end
        async with asyncio.TaskGroup() as group:
            answers = Answers(self.context, group)
            for step in range(1, self.context.options.max_steps + 1):
                if not live:
                    break
                try:
                    selection, records = await self._step(step, live, finished)
                except DecodeError:
                    if not answers.started:
                        raise
                    live = []
                    break
                live, newly = self._advance(selection, records)
                finished = [*selection.kept, *newly]
                ended += newly
                answers.start(newly)
                self._report(step, live, finished, ended)
            answers.start(_close(beam, "max_steps") for beam in live)
            search_done = time.perf_counter()
        answered = answers.answered()
        if not answered:
            raise answers.failure()
        return answered, time.perf_counter() - search_done

    async def _step(
        self, step: int, live: list[Beam], finished: list[Beam]
    ) -> tuple[Selection, list[CandidateRecord] | None]:
        """One round and its top B (its candidates kept in the search tree), with every
        candidate's record when they are asked for."""
        outcome = await Round(self.context, step, live, finished).run()
        self.rounds.append(outcome.timing)
        candidates = outcome.candidates
        if step == 1 and candidates and all(c.proposal.context_full for c in candidates):
            raise ContextLengthExceededError(
                "the messages leave no room in any proposer's context; shorten them",
                param="messages",
            )
        options = self.context.options
        selection = select_top(
            candidates, outcome.finished, options.beam_width, self.context.step_mode
        )
        records = self._record_round(step, candidates, selection)
        if not selection.chosen and not selection.kept:
            raise self._nothing_survived(step)
        return selection, records if options.include_candidates else None

    def _record_round(
        self, step: int, candidates: Sequence[Candidate], selection: Selection
    ) -> list[CandidateRecord]:
        """Every candidate's record, added to the search tree; a chosen one's `child` is the
        index of the beam it becomes: its place among the chosen (`_advance`)."""
        children = {id(c): index for index, c in enumerate(selection.chosen)}
        trainable = self.context.trainable
        records = [c.record(children.get(id(c)), trainable(c.proposers)) for c in candidates]
        self.search.append(SearchRound(step=step, candidates=records))
        return records

    def _nothing_survived(self, step: int) -> CordError:
        """Why no candidate survived: the client's input, timeouts, or failing teachers."""
        log = self.context.log
        if step == 1 and log.only_codes(step, TOO_LONG):
            param = "messages" if self.context.step_mode else "cord.reference_answer"
            return ContextLengthExceededError(
                f"the scored prompt is longer than every scorer's context ({param}); "
                + log.step_errors(step),
                param=param,
            )
        if step == 1 and log.only_codes(step, REFUSED):
            # every teacher refused the request as sent (a logit_bias id past the vocabulary):
            # the client's to fix, not a 502 that SDKs retry
            return InvalidRequestError(
                f"every teacher refused the request: {log.step_errors(step)}",
                code=TEACHER_REFUSED,
            )
        error = TeachersTimedOutError if log.only_timeouts(step) else DecodeError
        return error(f"step {step}: no candidate survived ({log.step_errors(step)})")

    def _advance(
        self, selection: Selection, records: list[CandidateRecord] | None
    ) -> tuple[list[Beam], list[Beam]]:
        """The chosen candidates as beams: still thinking, and newly finished."""
        live: list[Beam] = []
        done: list[Beam] = []
        taken: set[str] = set()
        for index, candidate in enumerate(selection.chosen):
            for name in candidate.proposers:
                self.context.usage[name].selected += 1
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
        segmenter = self.context.segmenter
        step_score = candidate.log_score if candidate.log_score is not None else float("-inf")
        text = parent.text + candidate.step_text
        record = StepRecord(
            index=parent.step_number,
            text=candidate.step_text,
            proposers=list(candidate.proposers),
            trainable=self.context.trainable(candidate.proposers),
            score=as_probability(step_score),
            log_score=step_score,
            scorers=candidate.parts,
            self_scored=candidate.self_scored,
            tokens=candidate.tokens,
            candidates=records,
        )
        trace_score = candidate.trace_score(self.context.step_mode)
        weight = step_weight(candidate.tokens)
        beam = Beam(
            index=index,
            text=text,
            opening=segmenter.opening(parent.step_number + 1, candidate.proposal),
            steps=[*parent.steps, record],
            tokens=parent.tokens + candidate.tokens,
            log_score=step_score if trace_score is None else trace_score,
            step_number=parent.step_number + 1,
            weighted_sum=parent.weighted_sum + step_score * weight,
            weight=parent.weight + weight,
            readings=dict(candidate.readings),
            scored_prefix=parent.text + candidate.appended + self.context.options.answer_prompt,
            path=[*parent.path, index],
        )
        return _close(beam, candidate.closes) if candidate.closes else beam

    def _report(self, step: int, live: list[Beam], finished: list[Beam], ended: list[Beam]) -> None:
        """A step is certain once every live beam and every finished trace shares it."""
        beams = [*live, *ended]
        shared = 0
        while all(len(b.steps) > shared for b in beams) and all(
            b.steps[shared] is beams[0].steps[shared] for b in beams
        ):
            shared += 1
        new = beams[0].steps[self._certain : shared] if beams else []
        self._certain = max(self._certain, shared)
        if self.on_progress is not None:
            self.on_progress(DecodeProgress(step, list(new), len(live), len(finished)))


def _close(beam: Beam, reason: ClosedBy) -> Beam:
    beam.text = close_thinking(beam.text)
    beam.closed_by = reason
    return beam


def _finished(answered: Answered, untrainable: frozenset[str]) -> FinishedTrace:
    beam, answer = answered.beam, answered.answer
    assert beam.closed_by is not None
    return FinishedTrace(
        reasoning=reasoning_of(beam.steps),
        answer=answer.text.strip(),
        steps=beam.steps,
        score=as_probability(beam.log_score),
        log_score=beam.log_score,
        closed_by=beam.closed_by,
        answer_teacher=answered.teacher,
        answer_finish_reason="length" if answer.finish_reason == "length" else "stop",
        reasoning_tokens=beam.tokens,
        answer_tokens=answer.tokens,
        answer_logprobs=answered.logprobs,
        answer_trainable=answered.teacher not in untrainable,
        path=beam.path,
    )


def _best_first(traces: Sequence[FinishedTrace]) -> list[FinishedTrace]:
    """Every finished trace, highest score first (a stable sort: ties keep finishing order)."""
    return sorted(traces, key=lambda t: -t.log_score)
