"""Trace records laid out as issue 25's contract has them: a search tree and a best path.

Two rounds of a beam of width 2 over teachers a, b and c. Round 1 has one parent (the root
beam) and four candidates: two kept, one dropped, one dropped and unscored. Round 2 has two
parents with a kept and a dropped candidate each. Teacher c may be set untrainable.
"""

from __future__ import annotations

import math
from typing import Any

# (parent, child, proposers, log_score) of each candidate, round by round; path [0, 0, 0].
TREE: list[list[tuple[int, int | None, list[str], float | None]]] = [
    [(0, 0, ["a", "b"], -0.5), (0, 1, ["c"], -0.9), (0, None, ["c"], -1.4), (0, None, ["b"], None)],
    [(0, 0, ["c"], -0.6), (0, None, ["b"], -1.1), (1, 1, ["b"], -0.8), (1, None, ["c"], -2.0)],
]
PATH = [0, 0, 0]


def _candidate(
    step: int, number: int, spec: tuple[int, int | None, list[str], float | None], untrainable: str
) -> dict[str, Any]:
    parent, child, proposers, log_score = spec
    body = f"Step {step}, idea {number}: {' and '.join(proposers)} say {step * 10 + number}."
    return {
        "parent": parent,
        "child": child,
        "text": f"### Step {step}. {body}",
        "step_text": f"### Step {step}. {body}\n\n",
        "proposers": proposers,
        "trainable": any(p != untrainable for p in proposers),
        "score": None if log_score is None else math.exp(log_score),
        "log_score": log_score,
        "scorers": [{"scorer": "a", "mean_logprob": log_score or 0.0, "tokens": 9, "weight": 1.0}],
        "self_scored": False,
        "tokens": 12,
        "finish_reason": "stop",
        "selected": child is not None,
        "closes": None,
    }


def searched_record(record_id: str, untrainable: str = "") -> dict[str, Any]:
    """A record with its search tree; teacher `untrainable` (if any) set trainable = false."""
    search = [
        {
            "step": i + 1,
            "candidates": [_candidate(i + 1, n, s, untrainable) for n, s in enumerate(r)],
        }
        for i, r in enumerate(TREE)
    ]
    chosen = [
        next(c for c in round_["candidates"] if (c["parent"], c["child"]) == (PATH[i], PATH[i + 1]))
        for i, round_ in enumerate(search)
    ]
    steps = [
        {
            "index": i + 1,
            "text": c["step_text"],
            **{k: c[k] for k in ("proposers", "trainable", "score", "log_score", "scorers")},
            "tokens": c["tokens"],
        }
        for i, c in enumerate(chosen)
    ]
    return {
        "schema": "cord-trace/1",
        "id": record_id,
        "messages": [{"role": "user", "content": "What is 12 + 30?"}],
        "reasoning": "".join(s["text"] for s in steps),
        "answer": "42",
        "score": 0.5,
        "finish_reason": "stop",
        "closed_by": "think",
        "answer_teacher": "a",
        "answer_trainable": untrainable != "a",
        "path": PATH,
        "search": search,
        "steps": steps,
        "teachers": [{"name": n, "selected": 1, "proposals": 4} for n in "abc"],
        "failures": [],
    }


def older_record(record_id: str) -> dict[str, Any]:
    """The same decode as a record written before search trees: candidates under each step,
    without `child`, `step_text` or `trainable`."""
    record = searched_record(record_id)
    for step, round_ in zip(record["steps"], record.pop("search"), strict=True):
        step.pop("trainable")
        step["candidates"] = [
            {k: v for k, v in c.items() if k not in ("child", "step_text", "trainable", "closes")}
            for c in round_["candidates"]
        ]
    del record["path"], record["answer_trainable"]
    return record
