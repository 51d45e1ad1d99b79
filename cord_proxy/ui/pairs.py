"""A searched step's preference pairs, as the trace browser shows them.

The pairs are the ones ``export --format dpo`` makes with its default options (every pair,
untrainable ones included and marked): ``data.preferences.round_pairs`` over
``data.search_tree.rounds``. Here they are grouped by the parent beam they share, with that
beam's text (the pairs' common prefix), largest margin first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import islice
from typing import Any

from cord_proxy.data.preferences import Pair, round_pairs
from cord_proxy.data.search_tree import Candidate, SearchTreeError, has_search_tree, rounds
from cord_proxy.errors import CordError
from cord_proxy.ui.index import TraceIndex
from cord_proxy.ui.query import parsed_line


class SearchNotFoundError(
    CordError, status=404, error_type="invalid_request_error", code="search_not_found"
):
    """The record has no readable search tree, or none for that step."""


@dataclass(frozen=True, slots=True)
class Side:
    """One candidate of a pair: what the trace gains with it and how it scored."""

    text: str
    score: float | None
    log_score: float | None
    proposers: list[str]
    trainable: bool
    child: int | None


@dataclass(frozen=True, slots=True)
class ShownPair:
    chosen: Side
    rejected: Side
    margin: float
    trainable: bool  # false: the export skips it (text of a trainable = false teacher)


@dataclass(frozen=True, slots=True)
class ParentPairs:
    """The pairs on one parent beam, and that beam's text (the pairs' shared prefix)."""

    parent: int
    on_path: bool
    prefix: str
    prefix_trainable: bool
    candidates: int
    pairs: list[ShownPair]


@dataclass(frozen=True, slots=True)
class StepPairs:
    line: int
    step: int
    rounds: int
    parents: list[ParentPairs]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _side(candidate: Candidate) -> Side:
    return Side(
        text=candidate.step_text,
        score=candidate.score,
        log_score=candidate.log_score,
        proposers=list(candidate.proposers),
        trainable=candidate.trainable,
        child=candidate.child,
    )


def _shown(pair: Pair) -> ShownPair:
    return ShownPair(_side(pair.chosen), _side(pair.rejected), pair.margin, pair.trainable)


def step_pairs(record: dict[str, Any], line: int, step: int) -> StepPairs:
    """The pairs of round `step` (from 1) of `record`'s search tree, by parent beam."""
    if not has_search_tree(record):
        raise SearchNotFoundError("this record has no search tree", param="line")
    total = len(record["search"])
    if not 1 <= step <= total:
        raise SearchNotFoundError(f"no step {step}: the search has {total}", param="step")
    try:
        current = next(islice(rounds(record), step - 1, None))
        ranked = sorted(round_pairs(current), key=Pair.order)
    except SearchTreeError as error:
        raise SearchNotFoundError(f"the search tree does not hold together: {error}") from None
    path = record["path"]
    parents = [
        ParentPairs(
            parent=parent,
            on_path=len(path) >= step and path[step - 1] == parent,
            prefix=current.prefixes[parent].text,
            prefix_trainable=current.prefixes[parent].trainable,
            candidates=len(group),
            pairs=[_shown(p) for p in ranked if p.chosen.parent == parent],
        )
        for parent, group in sorted(current.siblings.items())
    ]
    return StepPairs(line, step, total, parents)


def read_pairs(index: TraceIndex, line: int, step: int) -> StepPairs | None:
    """The pairs of one step of the record at `line`; None when there is no such line."""
    parsed = parsed_line(index, line)
    if parsed is None:
        return None
    _, record = parsed
    if not isinstance(record, dict):
        raise SearchNotFoundError("this line is not a readable record", param="line")
    return step_pairs(record, line, step)
