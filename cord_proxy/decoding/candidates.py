"""Beams and candidates, and how a round ranks them (docs/method.md, "The loop", steps 2 and 3).

A beam's score is the score of its trace so far. In reference mode that is the predictive
score of its last step (Eq. 3: the step conditions the reference answer). In step mode it is
the token-weighted mean of its steps' scores, so that one good last step cannot hide a bad
first one.

Each round ranks the finished traces and the new candidates together: a finished trace keeps
a slot only while it scores in the top B.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cord_proxy.decoding.scoring import as_probability
from cord_proxy.decoding.trace import CandidateRecord, ClosedBy, ScorerPart, StepRecord
from cord_proxy.teachers.base import Proposal

Order = tuple[int, int, int]
Readings = dict[str, ScorerPart]  # scorer model identity -> its reading


@dataclass
class Beam:
    """A partial (or, once `closed_by` is set, finished) trace.

    In reference mode `readings` are its last step's readings by scorer model, of the text
    `scored_prefix` (then the reference answer): a finished trace is compared on them.
    """

    index: int
    text: str
    opening: str
    steps: list[StepRecord]
    tokens: int
    log_score: float
    step_number: int
    closed_by: ClosedBy | None = None
    weighted_sum: float = 0.0
    weight: float = 0.0
    route: str = ""  # the replica routing key of this beam's line (teachers/affinity.py)
    path: list[int] = field(default_factory=lambda: [0])  # its index after each round
    readings: Readings = field(default_factory=dict)
    scored_prefix: str = ""


def step_weight(tokens: int) -> float:
    """How much a step counts in its trace's step-mode score: its tokens (at least one)."""
    return float(max(1, tokens))


@dataclass
class Candidate:
    """One proposed step under one parent beam, merged over the teachers that wrote it.

    `appended` is the driver's opening and the body (or nothing when a blank step closes the
    thinking), `step_text` what the trace gains with it (the segmenter's join applied), and
    `tokens` the count of that in the budget's encoding. `readers` are the scorer models that
    judge it, `readings` what they read.
    """

    order: Order
    beam: Beam
    proposal: Proposal
    proposers: list[str]
    closes: ClosedBy | None
    appended: str
    step_text: str
    tokens: int
    readers: list[str] = field(default_factory=list)
    readings: Readings = field(default_factory=dict)
    self_scored: bool = False
    parts: list[ScorerPart] = field(default_factory=list)
    log_score: float | None = None

    @property
    def body(self) -> str:
        return self.proposal.text

    @property
    def missing(self) -> set[str]:
        """Readers whose reading did not arrive (failed, retired or cut)."""
        return {reader for reader in self.readers if reader not in self.readings}

    def trace_score(self, step_mode: bool) -> float | None:
        """The score of the parent's trace extended by this step; None when unscored."""
        if self.log_score is None:
            return None
        if not step_mode:
            return self.log_score
        weight = step_weight(self.tokens)
        total = self.beam.weighted_sum + self.log_score * weight
        return total / (self.beam.weight + weight)

    def record(self, child: int | None, trainable: bool) -> CandidateRecord:
        """Its record; `child` is the index of the beam it became (None: dropped)."""
        return CandidateRecord(
            parent=self.beam.index,
            child=child,
            text=self.beam.opening + self.body,
            step_text=self.step_text,
            proposers=list(self.proposers),
            trainable=trainable,
            score=None if self.log_score is None else as_probability(self.log_score),
            log_score=self.log_score,
            scorers=self.parts,
            self_scored=self.self_scored,
            tokens=self.tokens,
            finish_reason=self.proposal.finish_reason,
            selected=child is not None,
            closes=self.closes,
        )


@dataclass(frozen=True)
class Selection:
    """The top B of a round: finished traces that keep their slot, and chosen candidates."""

    kept: list[Beam]
    chosen: list[Candidate]


def select_top(
    candidates: Sequence[Candidate], finished: Sequence[Beam], capacity: int, step_mode: bool
) -> Selection:
    """The `capacity` best of the finished traces and the scored candidates.

    Ties keep the order (beam, teacher in the ensemble, proposal), finished traces first.
    """
    pool: list[tuple[float, Order, Beam | Candidate]] = [
        (-beam.log_score, (-1, position, 0), beam) for position, beam in enumerate(finished)
    ]
    for candidate in candidates:
        score = candidate.trace_score(step_mode)
        if score is not None:
            pool.append((-score, candidate.order, candidate))
    pool.sort(key=lambda entry: (entry[0], entry[1]))
    top = [item for _, _, item in pool[:capacity]]
    return Selection(
        kept=[item for item in top if isinstance(item, Beam)],
        chosen=[item for item in top if isinstance(item, Candidate)],
    )
