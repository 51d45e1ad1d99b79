"""The curation baseline (s1, LIMO): sample whole traces, keep the best by the same score.

Every proposer samples `samples_per_teacher` whole thinking traces at once (no step stop,
only ``</think>``); each trace is scored with the predictive score CoRD uses (docs/method.md,
Eq. 3: the mean log-probability of the reference answer after the trace, averaged over the
scorers); the best trace's teacher then writes the final answer, as in CoRD.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass

from cord_proxy import DecodeOptions
from cord_proxy.teachers import THINK_CLOSE, THINK_OPEN, Message, Proposal, Teacher

FIRST_STEP = "### Step 1."


@dataclass(frozen=True)
class CuratedTrace:
    teacher: str
    reasoning: str
    answer: str
    log_score: float
    tokens: int
    calls: int = 0

    @property
    def score(self) -> float:
        return math.exp(self.log_score)


@dataclass(frozen=True)
class _Sample:
    teacher: Teacher
    proposal: Proposal


async def _sample(
    teacher: Teacher, conversation: Sequence[Message], n: int, options: DecodeOptions
) -> list[_Sample]:
    proposals = await teacher.propose(
        conversation,
        THINK_OPEN + FIRST_STEP,
        n=n,
        stop=[THINK_CLOSE],
        max_tokens=options.thinking_budget,
        seed=options.seed,
    )
    return [_Sample(teacher, p) for p in proposals]


def _distinct_scorers(scorers: Sequence[Teacher]) -> list[Teacher]:
    """One scorer per score identity: teachers sharing a model give the same scores."""
    seen: dict[str, Teacher] = {}
    for scorer in scorers:
        seen.setdefault(scorer.score_identity, scorer)
    return list(seen.values())


async def _log_score(
    sample: _Sample,
    conversation: Sequence[Message],
    scorers: Sequence[Teacher],
    reference: str,
    options: DecodeOptions,
) -> float:
    prefix = THINK_OPEN + FIRST_STEP + sample.proposal.text + options.answer_prompt
    spans = await asyncio.gather(*(s.score(conversation, prefix, reference) for s in scorers))
    means = [span.mean_logprob for span in spans if span.logprobs]
    return sum(means) / len(means) if means else -math.inf


def _closed(text: str) -> str:
    body = THINK_OPEN + FIRST_STEP + text
    return (body if body.endswith("\n") else body + "\n") + THINK_CLOSE


async def curate(
    conversation: Sequence[Message],
    proposers: Sequence[Teacher],
    scorers: Sequence[Teacher],
    reference: str,
    options: DecodeOptions,
    samples_per_teacher: int,
) -> CuratedTrace:
    """Sample len(proposers) x samples_per_teacher traces and keep the best scored one."""
    groups = await asyncio.gather(
        *(_sample(t, conversation, samples_per_teacher, options) for t in proposers)
    )
    samples = [s for group in groups for s in group]
    judges = _distinct_scorers(scorers)
    scores = await asyncio.gather(
        *(_log_score(s, conversation, judges, reference, options) for s in samples)
    )
    best_score, best = max(zip(scores, samples, strict=True), key=lambda pair: pair[0])
    (answer,) = await best.teacher.propose(
        conversation,
        _closed(best.proposal.text) + "\n\n",
        n=1,
        stop=list(options.answer_stop),
        max_tokens=options.answer_budget,
        seed=options.seed,
    )
    return CuratedTrace(
        teacher=best.teacher.name,
        reasoning=FIRST_STEP + best.proposal.text,
        answer=answer.text.strip(),
        log_score=best_score,
        tokens=sum(s.proposal.tokens for s in samples) + answer.tokens,
        calls=len(proposers) + len(samples) * len(judges) + 1,
    )
