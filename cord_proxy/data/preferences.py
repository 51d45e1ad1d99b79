"""Step-level preference pairs (``export --format dpo``) from a record's search tree.

A pair is two candidates of one round under one parent beam (one prefix, one scorer set):
`chosen` was kept (it became a beam of the next round), `rejected` was dropped. Both are
scored and their step texts are non-empty and differ. The margin is chosen's ``log_score``
minus rejected's: the difference of the scorers' weighted mean log-probabilities per token
(nats per token; in step mode, of readings centred on each scorer's mean over the round).

The row is TRL's conversational preference format. TRL (1.13) renders ``prompt`` with a
generation prompt and ``prompt + chosen`` as separate turns, so a prompt ending in an
assistant turn would be closed there and the step would open a new turn. The trace so far
therefore opens both answers: ``prompt`` is the conversation; ``chosen`` and ``rejected``
are one assistant turn each, ``<think>\\n`` + the trace so far + the step. The tokens they
share add the same log-ratio to both sides of DPO's (summed) loss, which cancels: what the
pair teaches is the step.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cord_proxy.data.search_tree import Candidate, Prefix, Round, rounds
from cord_proxy.teachers.base import THINK_OPEN


@dataclass(frozen=True)
class PairOptions:
    min_margin: float = 0.0  # keep pairs whose margin is at least this
    pairs_per_step: int | None = None  # per round of a record, largest margins first
    include_untrainable: bool = False


@dataclass(frozen=True)
class Pair:
    step: int
    prefix: Prefix
    chosen: Candidate
    rejected: Candidate

    @property
    def margin(self) -> float:
        assert self.chosen.log_score is not None and self.rejected.log_score is not None
        return self.chosen.log_score - self.rejected.log_score

    @property
    def trainable(self) -> bool:
        return self.prefix.trainable and self.chosen.trainable and self.rejected.trainable

    def order(self) -> tuple[float, int, int, int]:
        """Largest margin first; ties by parent beam, then the candidates' places."""
        return (-self.margin, self.chosen.parent, self.chosen.position, self.rejected.position)


def _usable(candidate: Candidate) -> bool:
    return candidate.scored and bool(candidate.step_text.strip())


def round_pairs(current: Round) -> Iterator[Pair]:
    """Every (kept, dropped) pair of siblings of a round: the kept one scored with non-empty
    text, the dropped one one of its rivals (``Round.rivals``: scored, other non-empty text)."""
    for parent, group in current.siblings.items():
        for chosen in (c for c in group if c.kept and _usable(c)):
            for rejected in current.rivals(chosen):
                yield Pair(current.step, current.prefixes[parent], chosen, rejected)


def _answer(prefix: Prefix, candidate: Candidate) -> list[dict[str, str]]:
    """One assistant turn: the thinking opened, the trace so far, then the step (leading
    blanks dropped, as the record's ``reasoning`` drops them)."""
    return [
        {"role": "assistant", "content": THINK_OPEN + (prefix.text + candidate.step_text).lstrip()}
    ]


def pair_id(record_id: str, pair: Pair) -> str:
    """A stable id: the record, the round, the parent beam and the two step texts."""
    key = [record_id, pair.step, pair.chosen.parent, pair.chosen.step_text, pair.rejected.step_text]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:24]


def pair_row(record_id: str, prompt: list[dict[str, str]], pair: Pair) -> dict[str, Any]:
    return {
        "prompt": prompt,
        "chosen": _answer(pair.prefix, pair.chosen),
        "rejected": _answer(pair.prefix, pair.rejected),
        "id": record_id,
        "step": pair.step,
        "pair_id": pair_id(record_id, pair),
        "chosen_score": pair.chosen.log_score,
        "rejected_score": pair.rejected.log_score,
        "margin": pair.margin,
        "chosen_proposers": list(pair.chosen.proposers),
        "rejected_proposers": list(pair.rejected.proposers),
    }


def counted_preference_rows(
    record: dict[str, Any], prompt: list[dict[str, str]], options: PairOptions
) -> tuple[list[dict[str, Any]], int]:
    """The record's pairs as rows, round by round, and how many held text of a
    ``trainable = false`` teacher. Such a pair (past the margin) is left out unless
    `options.include_untrainable`; the count is of those left out, or of those written."""
    record_id = str(record["id"])
    rows: list[dict[str, Any]] = []
    untrainable = 0
    for current in rounds(record):
        ranked = sorted(
            (p for p in round_pairs(current) if p.margin >= options.min_margin), key=Pair.order
        )
        kept = [p for p in ranked if p.trainable or options.include_untrainable]
        written = kept[: options.pairs_per_step]
        untrainable += len(ranked) - len(kept) + sum(not p.trainable for p in written)
        rows.extend(pair_row(record_id, prompt, pair) for pair in written)
    return rows, untrainable
