"""A trace record's search tree (``search`` and ``path``), rebuilt for the exports.

Round by round: every candidate, grouped by the beam it extends (its siblings), with that
beam's text so far. Beam 0 of round 1 is empty; beam ``p`` of round ``r + 1`` is the
candidate of round ``r`` whose ``child`` is ``p``, so its text is its parent's text and that
candidate's ``step_text``. ``path`` names the best trace's beam after each round, so its
chosen candidate in round ``r`` is the one whose parent is ``path[r - 1]`` and whose child
is ``path[r]``.

A record is rebuilt alone (memory: one record's beams), and the walk is lazy, so a caller
that stops early reads no further.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any


class SearchTreeError(ValueError):
    """The record's ``search`` or ``path`` does not hold together."""


@dataclass(frozen=True)
class Candidate:
    """One candidate step of a round, as the exports read it."""

    position: int  # its place in the round's list (a stable tie-break)
    parent: int
    child: int | None  # the beam it became in the next round; None: dropped
    step_text: str  # exactly what the trace gains with it
    score: float | None  # the probability form of log_score
    log_score: float | None  # None: no scorer could score it
    proposers: tuple[str, ...]
    trainable: bool

    @property
    def kept(self) -> bool:
        return self.child is not None

    @property
    def scored(self) -> bool:
        return self.log_score is not None


@dataclass(frozen=True)
class Prefix:
    """A beam's trace so far: the concatenated step texts, and whether every one of its
    steps came from a trainable teacher."""

    text: str
    trainable: bool

    def extended(self, candidate: Candidate) -> Prefix:
        return Prefix(self.text + candidate.step_text, self.trainable and candidate.trainable)


ROOT = Prefix("", True)


@dataclass(frozen=True)
class Round:
    """One round: its step number, and per parent beam its prefix and its candidates."""

    step: int
    prefixes: Mapping[int, Prefix]
    siblings: Mapping[int, list[Candidate]]

    def children(self) -> dict[int, Prefix]:
        """The next round's beams: each kept candidate's prefix, by its child index."""
        return {
            c.child: self.prefixes[parent].extended(c)
            for parent, group in self.siblings.items()
            for c in group
            if c.child is not None
        }

    def rivals(self, kept: Candidate) -> Iterator[Candidate]:
        """The dropped siblings a kept candidate is weighed against, in the round's order:
        same parent beam, scored, with non-empty text other than the kept one's. Only the
        rival is checked: whether the kept candidate itself is usable is the caller's rule."""
        kept_text = kept.step_text.strip()
        for sibling in self.siblings[kept.parent]:
            text = sibling.step_text.strip()
            if not sibling.kept and sibling.scored and text and text != kept_text:
                yield sibling


@dataclass(frozen=True)
class PathStep:
    """A round of the best trace: the round, and the candidate the trace took in it."""

    round: Round
    chosen: Candidate

    def rivals(self) -> Iterator[Candidate]:
        """The dropped siblings the chosen candidate is weighed against (``Round.rivals``)."""
        return self.round.rivals(self.chosen)

    @property
    def prefix(self) -> Prefix:
        return self.round.prefixes[self.chosen.parent]


def has_search_tree(record: Mapping[str, Any]) -> bool:
    """Whether the record carries the search tree (records of older files do not)."""
    return isinstance(record.get("search"), list) and isinstance(record.get("path"), list)


def _number(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SearchTreeError(f"{what} is not a number")
    return float(value)


def _index(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SearchTreeError(f"{what} is not a beam index")
    return value


def _candidate(position: int, raw: Any, where: str) -> Candidate:
    if not isinstance(raw, dict):
        raise SearchTreeError(f"{where} is not an object")
    step_text, proposers = raw.get("step_text"), raw.get("proposers", [])
    if not isinstance(step_text, str):
        raise SearchTreeError(f"{where} has no 'step_text' string")
    if not isinstance(proposers, list) or not all(isinstance(p, str) for p in proposers):
        raise SearchTreeError(f"{where}'s 'proposers' is not a list of names")
    child = raw.get("child")
    return Candidate(
        position=position,
        parent=_index(raw.get("parent"), f"{where}'s parent"),
        child=None if child is None else _index(child, f"{where}'s child"),
        step_text=step_text,
        score=_number(raw.get("score"), f"{where}'s score"),
        log_score=_number(raw.get("log_score"), f"{where}'s log_score"),
        proposers=tuple(proposers),
        trainable=raw.get("trainable", True) is not False,
    )


def _round(number: int, raw: Any, prefixes: dict[int, Prefix]) -> Round:
    if not isinstance(raw, dict) or not isinstance(raw.get("candidates"), list):
        raise SearchTreeError(f"round {number} has no 'candidates' list")
    step = raw.get("step", number)
    siblings: dict[int, list[Candidate]] = {}
    for position, item in enumerate(raw["candidates"]):
        candidate = _candidate(position, item, f"round {number}'s candidate {position}")
        if candidate.parent not in prefixes:
            raise SearchTreeError(f"round {number}: no beam {candidate.parent} to extend")
        siblings.setdefault(candidate.parent, []).append(candidate)
    kept = [c.child for group in siblings.values() for c in group if c.child is not None]
    if len(kept) != len(set(kept)):
        raise SearchTreeError(f"round {number}: two candidates became the same beam")
    return Round(_index(step, f"round {number}'s step"), prefixes, siblings)


def rounds(record: Mapping[str, Any]) -> Iterator[Round]:
    """Every round of the record's search, in order, each with its parents' prefixes."""
    if not has_search_tree(record):
        raise SearchTreeError("no search tree")
    prefixes: dict[int, Prefix] = {0: ROOT}
    for number, raw in enumerate(record["search"], start=1):
        current = _round(number, raw, prefixes)
        yield current
        prefixes = current.children()


def best_path(record: Mapping[str, Any]) -> Iterator[PathStep]:
    """The best trace's rounds: in round ``r``, the candidate from beam ``path[r - 1]`` that
    became beam ``path[r]``."""
    path = record.get("path")
    if not isinstance(path, list) or not path or path[0] != 0:
        raise SearchTreeError("'path' does not start at the root beam 0")
    indexes = [_index(value, "an entry of 'path'") for value in path]
    walk = rounds(record)
    for number, (parent, child) in enumerate(pairwise(indexes), start=1):
        current = next(walk, None)
        if current is None:
            raise SearchTreeError(f"'path' is longer than the search ({number - 1} rounds)")
        chosen = [c for c in current.siblings.get(parent, []) if c.child == child]
        if len(chosen) != 1:
            raise SearchTreeError(f"round {number}: no candidate from beam {parent} to {child}")
        yield PathStep(current, chosen[0])
