"""Scoring reads: each scorer model reads what a round asks of it in one batch per beam,
and each (prefix, target) once however many candidates ask.

Candidates that share a scored text (twins, a finished trace read again) share its read. A
model's reads of one beam go to it together (`score_all`: teachers/span_scoring.py reads them
in as few requests as it can), with the beam's routing key, so that a replica router sends
them where the beam's prefix is cached (teachers/affinity.py). A read that ended is kept
with the round (`made`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cord_proxy.concurrency import gather_or_cancel, value_or_error
from cord_proxy.decoding.context import DecodeContext
from cord_proxy.decoding.cuts import Cuts
from cord_proxy.decoding.scorers import ScorerModel
from cord_proxy.decoding.scoring import normalised_logprob
from cord_proxy.decoding.trace import ScorerPart
from cord_proxy.errors import TeacherError
from cord_proxy.teachers.affinity import use_routing_key
from cord_proxy.teachers.base import BatchScorer, Message, SpanScore, Teacher

ReadKey = tuple[str, str, str]


@dataclass(frozen=True)
class Question:
    """A scorer model, the prefix it reads, the target it scores after it, and the routing
    key of the beam it reads for."""

    model: ScorerModel
    prefix: str
    target: str
    route: str | None


@dataclass(frozen=True)
class Made:
    """A read that ended: what it read (None when it failed)."""

    part: ScorerPart | None


async def score_all(
    teacher: Teacher, conversation: Sequence[Message], pairs: Sequence[tuple[str, str]]
) -> list[SpanScore | TeacherError]:
    """Each (prefix, target)'s score by `teacher`, or its error: in one batch where the
    teacher takes one, else one call each."""
    if isinstance(teacher, BatchScorer):
        return await teacher.score_many(conversation, pairs)

    return await gather_or_cancel(
        *(
            value_or_error(teacher.score(conversation, prefix, target), TeacherError)
            for prefix, target in pairs
        )
    )


class Reader:
    def __init__(self, context: DecodeContext, step: int, cuts: Cuts | None = None):
        self.context = context
        self.step = step
        self.cuts = cuts or Cuts()
        self._made: dict[ReadKey, Made] = {}

    async def read_all(self, questions: Sequence[Question]) -> None:
        """Every question not yet read, by every model that can still score: one batch per
        model and beam, all at once."""
        batches: dict[tuple[str, str | None], list[tuple[str, str]]] = {}
        models: dict[str, ScorerModel] = {}
        asked: set[ReadKey] = set()
        for q in questions:
            key = (q.model.identity, q.prefix, q.target)
            if key in self._made or key in asked or not self.context.log.can_score(q.model.teacher):
                continue
            asked.add(key)
            models[q.model.identity] = q.model
            batches.setdefault((q.model.identity, q.route), []).append((q.prefix, q.target))
        await gather_or_cancel(
            *(self._read_batch(models[i], route, pairs) for (i, route), pairs in batches.items())
        )

    def made(self, model: ScorerModel, prefix: str, target: str) -> Made | None:
        """The read of `target` after `prefix` by `model`, if one ended."""
        return self._made.get((model.identity, prefix, target))

    async def _read_batch(
        self, model: ScorerModel, route: str | None, pairs: list[tuple[str, str]]
    ) -> None:
        use_routing_key(route)
        usage = self.context.usage[model.name]
        usage.score_calls += len(pairs)
        with self.cuts.watch(model.name, "score"):
            try:
                scored = await score_all(model.teacher, self.context.conversation, pairs)
            except TeacherError as error:  # the whole batch failed: one failure
                scored = [error] * len(pairs)
        counted: set[int] = set()
        for (prefix, target), span in zip(pairs, scored, strict=True):
            part = self._part(model, target, span, counted)
            self._made[(model.identity, prefix, target)] = Made(part)

    def _part(
        self, model: ScorerModel, target: str, span: SpanScore | TeacherError, counted: set[int]
    ) -> ScorerPart | None:
        """One read's part; a failure is recorded once, however many reads it failed."""
        context = self.context
        if isinstance(span, TeacherError):
            if id(span) not in counted:
                counted.add(id(span))
                context.log.scorer_failed(self.step, model.teacher, span)
            return None
        context.log.scorer_succeeded(model.teacher)
        if not span.logprobs:
            return None
        context.usage[model.name].score_tokens += span.context_tokens + len(span.logprobs)
        # Eq. 3 is the per-token mean; per-byte normalisation is for step mode only.
        normalisation = context.options.score_normalisation if context.step_mode else "token"
        return ScorerPart(
            scorer=model.name,
            mean_logprob=normalised_logprob(span.logprobs, target, normalisation),
            tokens=len(span.logprobs),
            weight=model.weight,
            method=span.method,
        )
