"""One decode's inputs, resolved: the engine's single door takes a `DecodeJob`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cord_proxy.decoding.options import DecodeOptions
from cord_proxy.errors import InvalidRequestError, TeacherCapabilityError
from cord_proxy.roles import GapKind, role_gaps
from cord_proxy.teachers.base import CallExtras, Message, Teacher

# a job's role gaps, as capability errors of the teacher (or "(ensemble)")
ROLE_GAPS: dict[GapKind, str] = {
    "no_proposer": "no teacher can propose steps",
    "cannot_score": "cannot score (it has no score role or no logprobs)",
    "no_scorer": "no teacher can score candidates",
}


@dataclass(frozen=True)
class DecodeJob:
    """What to decode and with whom.

    `proposers` write steps and `scorers` rescore them. With `reference_answer`, candidates
    are scored by the predictive probability of that answer (docs/method.md, Eq. 3); without it,
    by the scorers' likelihood of the step. `scorer_weights` weight the scorers (default 1,
    each finite and above 0; docs/method.md, "Scorers and weights"). `extras` are the
    request's fields for the proposal calls (steps: the sampling fields; answers: all of them),
    and `recorded` the request fields kept in the dataset record and nowhere else.
    `prices` are USD per million tokens, by teacher name: a priced teacher's ``cost_usd`` is
    its price times every token it processed (prompt, completion and scoring alike), in place
    of the cost its calls reported (litellm's); each finite and >= 0.
    A job whose teachers cannot fill their roles is refused when it is made, not mid-decode.
    """

    conversation: tuple[Message, ...]
    proposers: tuple[Teacher, ...]
    scorers: tuple[Teacher, ...]
    options: DecodeOptions = field(default_factory=DecodeOptions)
    reference_answer: str | None = None
    scorer_weights: Mapping[str, float] = field(default_factory=dict)
    extras: CallExtras = field(default_factory=CallExtras)
    recorded: Mapping[str, Any] = field(default_factory=dict)
    prices: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_roles(self.proposers, self.scorers)
        _check_weights(self.scorer_weights)
        _check_prices(self.prices)
        problem = reference_problem(self.reference_answer)
        if problem is not None:
            raise InvalidRequestError(problem, param="reference_answer")

    @classmethod
    def create(
        cls,
        question: str | Sequence[Message],
        teachers: Sequence[Teacher],
        options: DecodeOptions | None = None,
        *,
        scorers: Sequence[Teacher] | None = None,
        reference_answer: str | None = None,
        scorer_weights: Mapping[str, float] | None = None,
        prices: Mapping[str, float] | None = None,
    ) -> DecodeJob:
        """A job from a question: `teachers` that can propose do; `scorers` default to those
        of `teachers` that can score; `prices` to the teachers' configured ones."""
        conversation = (
            (Message(role="user", content=question),)
            if isinstance(question, str)
            else tuple(question)
        )
        proposers = tuple(t for t in teachers if t.can_propose)
        chosen = (
            tuple(scorers) if scorers is not None else tuple(t for t in teachers if t.can_score)
        )
        return cls(
            conversation,
            proposers,
            chosen,
            options or DecodeOptions(),
            reference_answer,
            dict(scorer_weights or {}),
            prices=dict(prices) if prices is not None else configured_prices([*teachers, *chosen]),
        )


def reference_problem(reference_answer: str | None) -> str | None:
    """What is wrong with a reference answer, if anything (the one check: a request's
    ``cord.reference_answer`` and a job's)."""
    if reference_answer is not None and not reference_answer.strip():
        return "reference_answer must not be blank; omit it to score steps instead"
    return None


def _check_weights(weights: Mapping[str, float]) -> None:
    bad = [name for name, weight in weights.items() if not (math.isfinite(weight) and weight > 0)]
    if bad:
        raise InvalidRequestError(
            f"scorer weights must be finite numbers above 0: {', '.join(sorted(bad))}",
            param="scorer_weights",
        )


def configured_prices(teachers: Sequence[Teacher]) -> dict[str, float]:
    """The prices of teachers built from a config (``cost_per_million_tokens``), by name;
    a teacher without a config or without a price has none."""
    found: dict[str, float] = {}
    for teacher in teachers:
        price = getattr(getattr(teacher, "config", None), "cost_per_million_tokens", None)
        if isinstance(price, int | float):
            found[teacher.name] = float(price)
    return found


def _check_prices(prices: Mapping[str, float]) -> None:
    bad = [name for name, price in prices.items() if not (math.isfinite(price) and price >= 0)]
    if bad:
        raise InvalidRequestError(
            f"prices must be finite numbers >= 0 (USD per million tokens): "
            f"{', '.join(sorted(bad))}",
            param="prices",
        )


def _check_roles(proposers: Sequence[Teacher], scorers: Sequence[Teacher]) -> None:
    gaps = role_gaps([t.can_propose for t in proposers], {t.name: t.can_score for t in scorers})
    if gaps:
        raise TeacherCapabilityError(gaps[0].teacher or "(ensemble)", gaps[0].said(ROLE_GAPS))
