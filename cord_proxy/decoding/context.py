"""What every part of one decode shares: its inputs, its teachers and its accounting."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cord_proxy.decoding.failures import FailureLog
from cord_proxy.decoding.options import DecodeOptions
from cord_proxy.decoding.scorers import ScorerModel
from cord_proxy.decoding.segment import Segmenter
from cord_proxy.decoding.trace import TeacherUsage
from cord_proxy.teachers.base import Message, Proposal, Teacher


def call_seed(seed: int | None, *parts: object) -> int | None:
    """A seed of its own for each call, derived from the request's seed.

    One seed for every call would make same-model teachers draw the same random stream and
    propose the same steps; derived seeds keep a decode reproducible and its proposals varied.
    """
    if seed is None:
        return None
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (2**31)


@dataclass
class DecodeContext:
    conversation: list[Message]
    proposers: list[Teacher]
    models: list[ScorerModel]
    options: DecodeOptions
    reference: str | None
    segmenter: Segmenter
    usage: dict[str, TeacherUsage]
    log: FailureLog
    prompt_tokens: int = 0  # the question's tokens, as the proposers of step 1 counted them

    @property
    def step_mode(self) -> bool:
        """Without a reference answer, steps are scored by how natural the others find them."""
        return self.reference is None

    def seed(self, *parts: object) -> int | None:
        return call_seed(self.options.seed, *parts)

    def count_proposals(self, teacher: str, step: int, proposals: Sequence[Proposal]) -> None:
        """A teacher's usage; step 1's proposals also tell the question's prompt tokens."""
        usage = self.usage[teacher]
        usage.proposals += len(proposals)
        usage.completion_tokens += sum(p.tokens for p in proposals)
        usage.prompt_tokens += sum(p.prompt_tokens for p in proposals)
        usage.cost_usd += sum(p.cost_usd for p in proposals)
        seen = [p.prompt_tokens for p in proposals if p.prompt_tokens > 0]
        if step == 1 and seen and (self.prompt_tokens == 0 or min(seen) < self.prompt_tokens):
            self.prompt_tokens = min(seen)
