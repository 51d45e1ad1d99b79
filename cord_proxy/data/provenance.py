"""A decode's provenance, rendered once: who wrote each step of a trace and how it scored.

The response's ``cord`` object and the dataset record are two layouts of this rendering.
Teacher failure texts are cleaned (``redact.clean``): they leave the process. The search tree
(``search``: every round's candidates; ``path``: the trace's beam after each round) and the
terms-of-use marks (each step's ``trainable``, the trace's ``answer_trainable``) are in the
record always, and in the response when the request asked for ``include_candidates``: a
default response keeps its lean shape.
"""

from __future__ import annotations

from typing import Any

from cord_proxy.decoding.trace import DecodeResult, FinishedTrace
from cord_proxy.redact import clean

MARKS = frozenset({"trainable"})  # a step's field shown only with the tree


def steps(
    trace: FinishedTrace, *, drop_nulls: bool = False, tree: bool = True
) -> list[dict[str, Any]]:
    """Every step of `trace`; `drop_nulls` leaves out unset fields (the dataset's form), and
    without `tree` the steps have no `trainable` mark (the lean response's form)."""
    exclude = None if tree else set(MARKS)
    return [
        s.model_dump(mode="json", exclude_none=drop_nulls, exclude=exclude) for s in trace.steps
    ]


def outcome(trace: FinishedTrace, *, tree: bool = True) -> dict[str, Any]:
    """How a trace scored and ended (with `tree`: whether its answer may be trained on)."""
    ended = {
        "score": trace.score,
        "log_score": trace.log_score,
        "closed_by": trace.closed_by,
        "answer_teacher": trace.answer_teacher,
    }
    return {**ended, "answer_trainable": trace.answer_trainable} if tree else ended


def choice(index: int, trace: FinishedTrace, *, tree: bool = True) -> dict[str, Any]:
    """One returned choice in the ``cord`` object: its outcome and how many steps it has."""
    return {"index": index, **outcome(trace, tree=tree), "steps": len(trace.steps)}


def alternative(trace: FinishedTrace) -> dict[str, Any]:
    """A finished beam other than the best, whole, as the dataset record keeps it."""
    return {
        "reasoning": trace.reasoning,
        "answer": trace.answer,
        **outcome(trace),
        "steps": steps(trace, drop_nulls=True),
        "path": list(trace.path),
    }


def search(result: DecodeResult) -> list[dict[str, Any]]:
    """Every round's candidates (each with its parent and child beam): the search tree."""
    return [r.model_dump(mode="json") for r in result.search]


def decode_provenance(
    result: DecodeResult,
    *,
    choices: int | None = None,
    drop_nulls: bool = False,
    tree: bool | None = None,
) -> dict[str, Any]:
    """The provenance of `result`'s best trace and of the decode: scoring, steps, teachers,
    failures, rounds, cost and timings. `choices`: how many returned choices to list; `tree`:
    with the search tree and the trainable marks (default: when the request asked for
    ``include_candidates``)."""
    best = result.best
    tree = result.include_candidates if tree is None else tree
    rendered: dict[str, Any] = {
        "score_mode": result.score_mode,
        "reference_used": result.reference_used,
        **outcome(best, tree=tree),
        "steps": steps(best, drop_nulls=drop_nulls, tree=tree),
    }
    if choices is not None:
        traces = result.traces[:choices]
        rendered["choices"] = [choice(i, t, tree=tree) for i, t in enumerate(traces)]
    if tree:
        rendered["path"] = list(best.path)
        rendered["search"] = search(result)
    return {
        **rendered,
        "teachers": [u.model_dump(mode="json") for u in result.teachers],
        "failures": [clean(f.model_dump(mode="json")) for f in result.failures],
        "dropped": list(result.dropped),
        "rounds": [r.model_dump(mode="json") for r in result.rounds],
        "cost_usd": sum(u.cost_usd for u in result.teachers),
        "budgets": {"thinking": result.thinking_budget, "answer": result.answer_budget},
        **({"request": result.recorded} if result.recorded else {}),
        "wall_s": result.wall_s,
        "answer_wait_s": result.answer_wait_s,
    }
