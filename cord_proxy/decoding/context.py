"""What every part of one decode shares: its inputs, its teachers and its accounting."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypedDict

from cord_proxy.decoding.failures import FailureLog
from cord_proxy.decoding.options import DecodeOptions
from cord_proxy.decoding.scorers import ScorerModel
from cord_proxy.decoding.segment import Segmenter
from cord_proxy.decoding.trace import TeacherUsage
from cord_proxy.teachers.base import CallExtras, Message, Proposal, Teacher


def call_seed(seed: int | None, *parts: object) -> int | None:
    """A seed of its own for each call, derived from the request's seed.

    One seed for every call would make same-model teachers draw the same random stream and
    propose the same steps; derived seeds keep a decode reproducible and its proposals varied.
    """
    if seed is None:
        return None
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (2**31)


class ExtrasArgument(TypedDict, total=False):
    """The ``extras`` keyword of `Teacher.propose`, present only when there are some."""

    extras: CallExtras


def extras_argument(extras: CallExtras) -> ExtrasArgument:
    """`extras` as a call's keyword arguments: none when empty, so that a teacher that takes
    no extras (a test's fake) keeps working for requests that set none."""
    return {} if extras.empty else {"extras": extras}


def untrainable(teachers: Sequence[Teacher]) -> frozenset[str]:
    """The names of the teachers whose config says ``trainable = false`` (a provider's terms
    forbid training on their outputs); a teacher without a config is trainable."""
    return frozenset(
        t.name for t in teachers if getattr(getattr(t, "config", None), "trainable", True) is False
    )


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
    prices: Mapping[str, float] = field(default_factory=dict)  # USD per million tokens
    extras: CallExtras = field(default_factory=CallExtras)  # the request's, for proposal calls
    untrainable: frozenset[str] = frozenset()  # proposers whose outputs must not be trained on

    def trainable(self, proposers: Sequence[str]) -> bool:
        """Whether a text these teachers wrote may be trained on: one trainable writer suffices."""
        return any(name not in self.untrainable for name in proposers)

    def step_extras(self) -> ExtrasArgument:
        """What a step's proposal call adds: the sampling fields (``**`` it into the call)."""
        return extras_argument(self.extras.for_steps())

    def answer_extras(self) -> ExtrasArgument:
        """What an answer call adds: every extra field (``**`` it into the call)."""
        return extras_argument(self.extras)

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

    def priced_usage(self) -> list[TeacherUsage]:
        """Every teacher's usage, its cost final (once, at the end of the decode): a teacher
        with a price costs that price per million of every token it processed, in place of
        the cost its calls reported; one without keeps its calls' cost (litellm's)."""
        for name, usage in self.usage.items():
            price = self.prices.get(name)
            if price is not None:
                usage.cost_usd = price * usage.processed_tokens / 1e6
        return list(self.usage.values())
