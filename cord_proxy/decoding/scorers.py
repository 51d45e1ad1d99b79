"""Scorer models: who reads a candidate, and with what weight (docs/method.md, "Scorers and
weights").

Teachers with the same `score_identity` (one model at one endpoint, read the same way, such as
one model listed at three temperatures) give the same readings: they are one scorer model,
read once, with one vote. A model's weight is the mean of its teachers' configured weights.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from cord_proxy.teachers.base import Teacher


@dataclass(frozen=True)
class ScorerModel:
    """One scorer model: the teachers that share its identity, the first of which reads."""

    identity: str
    teacher: Teacher
    names: tuple[str, ...]
    weight: float

    @property
    def name(self) -> str:
        """Its scorer parts are named after the first of its teachers in the scorer list."""
        return self.names[0]


def scorer_models(scorers: Sequence[Teacher], weights: Mapping[str, float]) -> list[ScorerModel]:
    """The distinct scorer models of `scorers`, in the order their first teacher is listed."""
    groups: dict[str, list[Teacher]] = {}
    for scorer in scorers:
        groups.setdefault(scorer.score_identity, []).append(scorer)
    return [
        ScorerModel(
            identity=identity,
            teacher=members[0],
            names=tuple(member.name for member in members),
            weight=sum(weights.get(member.name, 1.0) for member in members) / len(members),
        )
        for identity, members in groups.items()
    ]


def step_readers(
    models: Sequence[ScorerModel], proposer_identities: Collection[str]
) -> tuple[list[ScorerModel], bool]:
    """Who reads a step without a reference answer, and whether its own proposers do.

    Every model but the step's proposers' own reads it. When that leaves none (one local model
    beside hosted teachers, or one model at several temperatures), its proposers' models read
    it, and the step is marked self-scored.
    """
    others = [model for model in models if model.identity not in proposer_identities]
    return (others, False) if others else (list(models), True)
