"""Process labels (``export --format prm``) from a record's search tree.

TRL's stepwise supervision format: ``prompt`` (a string: TRL's PRM trainer tokenizes it as
text), ``completions`` (step texts, stripped: the trainer adds its ``step_separator`` after
each) and ``labels`` (one per completion). Per record:

- one row for the best trace: its steps, every label ``true``;
- for each round of the best trace, one row per dropped sibling of the step it took (same
  parent beam, scored, non-empty text other than the kept step's): the best trace's steps
  before that round, then the sibling; labels ``true`` ... ``true``, ``false``.

Steps whose text is blank (a step that only closes the thinking) are left out. ``soft``:
each label is that step's ``score`` instead, the probability form of its ``log_score``
(capped at 1: a centred step-mode score can pass it), for regression-style PRMs (TRL's PRM
trainer casts labels to integers, so it needs the booleans).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cord_proxy.data.search_tree import Candidate, best_path


@dataclass(frozen=True)
class LabelOptions:
    soft: bool = False
    include_untrainable: bool = False


def prompt_text(messages: Sequence[dict[str, str]]) -> str:
    """The conversation as the PRM's prompt string: its turns' texts, a blank line apart and
    after (TRL's PRM trainer puts the first step right after the prompt)."""
    return "".join(m["content"] + "\n\n" for m in messages if m["content"].strip())


def _label(candidate: Candidate, good: bool, soft: bool) -> bool | float:
    if not soft:
        return good
    assert candidate.score is not None
    return min(candidate.score, 1.0)


def _row(
    record_id: str,
    prompt: str,
    steps: Sequence[Candidate],
    last_good: bool,
    *,
    step: int,
    soft: bool,
) -> dict[str, Any]:
    goods = [True] * (len(steps) - 1) + [last_good]
    return {
        "prompt": prompt,
        "completions": [s.step_text.strip() for s in steps],
        "labels": [_label(s, good, soft) for s, good in zip(steps, goods, strict=True)],
        "id": record_id,
        "step": step,
        "kind": "trace" if last_good else "sibling",
    }


def counted_label_rows(
    record: dict[str, Any], prompt: str, options: LabelOptions
) -> tuple[list[dict[str, Any]], int]:
    """The record's rows, and how many held a step of a ``trainable = false`` teacher in
    their completions; such a row is left out unless `options.include_untrainable`."""
    record_id = str(record["id"])
    path = list(best_path(record))
    rows: list[tuple[list[Candidate], bool, int]] = []
    trace = [s.chosen for s in path if s.chosen.step_text.strip()]
    if trace:
        rows.append((trace, True, path[-1].round.step))
    before: list[Candidate] = []
    for taken in path:
        rows.extend(([*before, sibling], False, taken.round.step) for sibling in taken.rivals())
        if taken.chosen.step_text.strip():
            before.append(taken.chosen)
    trainable = [all(s.trainable for s in steps) for steps, _, _ in rows]
    written = [
        _row(record_id, prompt, steps, last_good, step=step, soft=options.soft)
        for (steps, last_good, step), ok in zip(rows, trainable, strict=True)
        if ok or options.include_untrainable
    ]
    return written, trainable.count(False)
