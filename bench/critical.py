"""The ideal critical path of a decode, rebuilt from the simulated teachers' call logs.

Ideal means: every teacher call takes exactly its simulated latency, calls of one step all
start together, and nothing else costs time (no HTTP, no JSON, no proxy). Then step ``d``
takes the longest, over its candidates, of proposal latency plus the longest scoring call
of that candidate; a finished beam's answer starts when the step that closed it ends.
A candidate scored by forced one-token reads (kind ``read``) needs its first read before
the others, which then run together: per scoring model, the earliest read plus the longest
of the rest.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Ideal:
    """The ideal wall time of one client request (one conversation)."""

    conv: str
    wall_s: float
    steps: int
    calls: int


@dataclass
class _Conversation:
    proposal_depth: dict[str, int]
    proposal_s: dict[str, float]
    score_s: dict[str, float]
    answers: list[tuple[str | None, float]]
    reads: dict[tuple[str, str], list[tuple[float, float]]]
    calls: int = 0


def _empty() -> _Conversation:
    return _Conversation({}, {}, {}, [], defaultdict(list))


def _reads_s(reads: list[tuple[float, float]]) -> float:
    """The first read (by arrival), then the rest together."""
    ordered = sorted(reads)
    return ordered[0][1] + max((sleep for _, sleep in ordered[1:]), default=0.0)


def _collect(records: Iterable[Mapping[str, Any]]) -> dict[str, _Conversation]:
    convs: dict[str, _Conversation] = defaultdict(_empty)
    for record in records:
        conv = convs[record["conv"]]
        conv.calls += 1
        sleep = float(record["sleep_s"])
        if record["kind"] == "propose":
            for marker in record["ids"]:
                conv.proposal_depth[marker] = int(record["depth"]) + 1
                conv.proposal_s[marker] = sleep
        elif record["kind"] == "score" and record["parent"] is not None:
            parent = record["parent"]
            conv.score_s[parent] = max(conv.score_s.get(parent, 0.0), sleep)
        elif record["kind"] == "read" and record["parent"] is not None:
            conv.reads[(record["parent"], record["model"])].append((record["arrived"], sleep))
        elif record["kind"] == "answer":
            conv.answers.append((record["parent"], sleep))
    for conv in convs.values():
        for (parent, _), reads in conv.reads.items():
            conv.score_s[parent] = max(conv.score_s.get(parent, 0.0), _reads_s(reads))
    return convs


def _ideal(conv_key: str, conv: _Conversation) -> Ideal:
    step_s: dict[int, float] = defaultdict(float)
    for marker, depth in conv.proposal_depth.items():
        ready = conv.proposal_s[marker] + conv.score_s.get(marker, 0.0)
        step_s[depth] = max(step_s[depth], ready)
    ends: dict[int, float] = {}
    elapsed = 0.0
    for depth in sorted(step_s):
        elapsed += step_s[depth]
        ends[depth] = elapsed
    last = max(ends, default=0)
    finish = elapsed
    for parent, sleep in conv.answers:
        depth = conv.proposal_depth.get(parent, last) if parent is not None else last
        finish = max(finish, ends.get(depth, elapsed) + sleep)
    return Ideal(conv=conv_key, wall_s=finish, steps=len(step_s), calls=conv.calls)


def ideal_paths(records: Iterable[Mapping[str, Any]]) -> dict[str, Ideal]:
    """The ideal wall time of every conversation found in the records."""
    return {key: _ideal(key, conv) for key, conv in _collect(records).items()}


def service_lag(records: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """How late the simulator answered beyond its simulated latency (its own overhead)."""
    lags = sorted(float(r["done"]) - float(r["arrived"]) - float(r["sleep_s"]) for r in records)
    if not lags:
        return {"p50_s": 0.0, "p99_s": 0.0, "max_s": 0.0}
    return {
        "p50_s": lags[len(lags) // 2],
        "p99_s": lags[min(len(lags) - 1, int(0.99 * len(lags)))],
        "max_s": lags[-1],
    }
