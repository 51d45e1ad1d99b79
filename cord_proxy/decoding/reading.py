"""Scoring reads: one scorer model's reading of a span, each read once however many ask.

Candidates that share a scored text (twins, a finished trace read again) share its read
(`SharedCalls`); the reads of a round, and what they read, live as long as the round
(`Reader.aclose`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from cord_proxy.decoding.context import DecodeContext
from cord_proxy.decoding.cuts import Cuts
from cord_proxy.decoding.scorers import ScorerModel
from cord_proxy.decoding.scoring import normalised_logprob
from cord_proxy.decoding.trace import ScorerPart
from cord_proxy.errors import TeacherError
from cord_proxy.teachers.shared_calls import SharedCalls

ReadKey = tuple[str, str, str]
KEEP_EVERY_READ = 1  # a round keeps all its readings: each weighs nothing against this


@dataclass(frozen=True)
class Made:
    """A read that ended: what it read (None when it failed), and when it ended."""

    part: ScorerPart | None
    at: float


class Reader:
    def __init__(self, context: DecodeContext, step: int, cuts: Cuts | None = None):
        self.context = context
        self.step = step
        self.cuts = cuts or Cuts()
        self._reads: SharedCalls[ScorerPart | None] = SharedCalls(KEEP_EVERY_READ, lambda _: 0)
        self._made: dict[ReadKey, Made] = {}

    async def read(self, model: ScorerModel, prefix: str, target: str) -> ScorerPart | None:
        """`model`'s reading of `target` after `prefix`; None when it failed or is retired."""
        if not self.context.log.can_score(model.teacher):
            return None
        key: ReadKey = (model.identity, prefix, target)
        with self.cuts.watch(model.name, "score"):
            return await self._reads.call(key, lambda: self._read_once(key, model))

    def made(self, model: ScorerModel, prefix: str, target: str) -> Made | None:
        """The read of `target` after `prefix` by `model`, if one ended (even after aclose)."""
        return self._made.get((model.identity, prefix, target))

    async def aclose(self) -> None:
        """Cancel the reads still running, and wait until they have ended."""
        await self._reads.aclose()

    async def _read_once(self, key: ReadKey, model: ScorerModel) -> ScorerPart | None:
        """The call behind `read`: counted, and its failure recorded, once."""
        part = await self._call(model, prefix=key[1], target=key[2])
        self._made[key] = Made(part, time.perf_counter())
        return part

    async def _call(self, model: ScorerModel, prefix: str, target: str) -> ScorerPart | None:
        context = self.context
        usage = context.usage[model.name]
        usage.score_calls += 1
        try:
            span = await model.teacher.score(context.conversation, prefix, target)
        except TeacherError as error:
            context.log.scorer_failed(self.step, model.teacher, error)
            return None
        context.log.scorer_succeeded(model.teacher)
        if not span.logprobs:
            return None
        usage.score_tokens += span.context_tokens + len(span.logprobs)
        # Eq. 3 is the per-token mean; per-byte normalisation is for step mode only.
        normalisation = context.options.score_normalisation if context.step_mode else "token"
        return ScorerPart(
            scorer=model.name,
            mean_logprob=normalised_logprob(span.logprobs, target, normalisation),
            tokens=len(span.logprobs),
            weight=model.weight,
            method=span.method,
        )
