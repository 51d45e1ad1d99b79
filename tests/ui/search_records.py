"""Trace records with a search tree and a best path: written out, and made by a decode.

The written ones: two rounds of a beam of width 2 over teachers a, b and c. Round 1 has one
parent (the root beam) and four candidates: two kept, one dropped, one dropped and unscored.
Round 2 has two parents with a kept and a dropped candidate each. Teacher c may be set
untrainable. The decoded one: the engine's own record of a decode by three scripted
teachers (B = 2, three steps), c set untrainable.
"""

from __future__ import annotations

import asyncio
import json
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cord_proxy.config import TeacherConfig
from cord_proxy.data.jsonl import encode_line
from cord_proxy.data.records import trace_record
from cord_proxy.decoding import DecodeJob, DecodeOptions, decode
from tests.support.fakes import ScriptedFakeTeacher, digest, hashed_logprobs, is_answer_prefix

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


def _teacher(name: str, trainable: bool) -> ScriptedFakeTeacher:
    """Steps that depend on the prefix; b sometimes writes a's text (a merged candidate)."""

    def propose(prefix: str) -> str:
        if is_answer_prefix(prefix):
            return "42"
        key = digest(name + prefix)
        writer = "a" if name == "b" and int(key, 16) % 3 == 0 else name
        return f" {writer} thinks {digest(writer + prefix)}."

    teacher = ScriptedFakeTeacher(name, proposals=propose, logprobs=hashed_logprobs(name))
    config = TeacherConfig(name=name, base_url="http://127.0.0.1:9/v1", model="m")
    teacher.config = config.model_copy(update={"trainable": trainable})  # type: ignore[attr-defined]
    return teacher


async def _decoded(record_id: str) -> dict[str, Any]:
    teachers = [_teacher(name, trainable=name != "c") for name in "abc"]
    options = DecodeOptions(beam_width=2, max_steps=3, thinking_budget=96)
    job = DecodeJob.create("What is 12 + 30?", teachers, options, reference_answer="42")
    result = await decode(job)
    return dict(json.loads(encode_line(trace_record(record_id, "cord", job, result))))


def decoded_record(record_id: str) -> dict[str, Any]:
    """The record of a real decode (in a thread of its own: a test may hold an event loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _decoded(record_id)).result()
