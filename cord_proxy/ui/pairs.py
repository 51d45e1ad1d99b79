"""A searched step's preference pairs, as the trace browser shows them.

A record written for data keeps its search tree (``search``: every round's candidates with
their ``parent`` and ``child`` beams). In one round, the candidates on one parent are
siblings: one prefix, one scorer set. Each kept one (``child`` set) is paired with each
dropped sibling (``child`` null); the margin is the kept one's ``log_score`` less the
dropped one's. Pairs of a parent are listed largest margin first, an unscored side last.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from cord_proxy.errors import CordError
from cord_proxy.ui.index import TraceIndex


class SearchNotFoundError(
    CordError, status=404, error_type="invalid_request_error", code="search_not_found"
):
    """The record has no search tree, or none for that step."""


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
class Pair:
    chosen: Side
    rejected: Side
    margin: float | None
    trainable: bool


@dataclass(frozen=True, slots=True)
class ParentPairs:
    """The pairs on one parent beam, and that beam's text (the pairs' shared prefix)."""

    parent: int
    on_path: bool
    prefix: str
    pairs: list[Pair]


@dataclass(frozen=True, slots=True)
class StepPairs:
    line: int
    step: int
    rounds: int
    parents: list[ParentPairs]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _beam(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _candidates(round_: Any) -> list[dict[str, Any]]:
    found = round_.get("candidates") if isinstance(round_, dict) else None
    return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []


def _text(candidate: dict[str, Any]) -> str:
    text = candidate.get("step_text")
    return str(text if isinstance(text, str) else candidate.get("text", ""))


def _side(candidate: dict[str, Any]) -> Side:
    proposers = candidate.get("proposers")
    return Side(
        text=_text(candidate),
        score=_number(candidate.get("score")),
        log_score=_number(candidate.get("log_score")),
        proposers=[str(p) for p in proposers] if isinstance(proposers, list) else [],
        trainable=candidate.get("trainable") is not False,
        child=_beam(candidate.get("child")),
    )


def _pair(chosen: Side, rejected: Side) -> Pair:
    kept, dropped = chosen.log_score, rejected.log_score
    margin = kept - dropped if kept is not None and dropped is not None else None
    return Pair(chosen, rejected, margin, chosen.trainable and rejected.trainable)


def _by_margin(pair: Pair) -> tuple[bool, float]:
    return (pair.margin is None, -(pair.margin or 0.0))


def prefix(search: list[Any], step: int, beam: int) -> str:
    """The text of beam `beam` at round `step`: what its candidates extend."""
    parts: list[str] = []
    for round_ in reversed(search[: step - 1]):
        came = next((c for c in _candidates(round_) if _beam(c.get("child")) == beam), None)
        if came is None:
            break
        parts.append(_text(came))
        beam = _beam(came.get("parent")) or 0
    return "".join(reversed(parts))


def step_pairs(record: dict[str, Any], line: int, step: int) -> StepPairs:
    """The pairs of round `step` (1-based) of `record`'s search tree, grouped by parent."""
    search = record.get("search")
    if not isinstance(search, list) or not search:
        raise SearchNotFoundError("this record has no search tree", param="line")
    if not 1 <= step <= len(search):
        raise SearchNotFoundError(f"no step {step}: the search has {len(search)}", param="step")
    path = record.get("path")
    sides: dict[int, tuple[list[Side], list[Side]]] = {}
    for candidate in _candidates(search[step - 1]):
        kept, dropped = sides.setdefault(_beam(candidate.get("parent")) or 0, ([], []))
        side = _side(candidate)
        (kept if side.child is not None else dropped).append(side)
    parents = []
    for parent, (kept, dropped) in sorted(sides.items()):
        pairs = sorted((_pair(c, r) for c in kept for r in dropped), key=_by_margin)
        on_path = isinstance(path, list) and len(path) >= step and path[step - 1] == parent
        parents.append(ParentPairs(parent, on_path, prefix(search, step, parent), pairs))
    return StepPairs(line, step, len(search), parents)


def read_pairs(index: TraceIndex, line: int, step: int) -> StepPairs | None:
    """The pairs of one step of the record at `line`; None when there is no such line."""
    if not 0 <= line < index.refresh():
        return None
    (raw,) = index.read([line])
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        record = None
    if not isinstance(record, dict):
        raise SearchNotFoundError("this line is not a readable record", param="line")
    return step_pairs(record, line, step)
