"""The trace record (schema ``cord-trace/1``): one finished decode as one dataset line.

A record holds the request id, ensemble and messages, the request's recorded fields
(``request``: ``metadata``, ``user``, ... as request_fields.py lists them), the reference
answer, the trace (``reasoning``) and final ``answer``, per-step provenance and scores, the
teachers with their tokens and cost, timings, and a hash of the decoding settings. The other
finished beams of the decode, if any, are kept under ``alternatives``. The whole search is
kept: ``search`` holds every round's candidates (parent and child beam, step text, scores,
proposers, whether each may be trained on), ``path`` the trace's beam after each round, and
``answer_trainable`` whether its answer's teacher may be trained on.

A record is built from a decode in this process (``trace_record``: the ensemble's name, the
engine's job and its result) or from a proxy's chat completion (``record_from_completion``);
both lay out the same provenance (``provenance``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cord_proxy.data.provenance import alternative, decode_provenance
from cord_proxy.redact import clean

if TYPE_CHECKING:
    from cord_proxy.decoding.job import DecodeJob
    from cord_proxy.decoding.trace import DecodeResult

SCHEMA = "cord-trace/1"
# Settings of a teacher that change what it writes or how it scores (not where it runs).
TEACHER_DECODING_FIELDS = (
    "kind",
    "model",
    "temperature",
    "top_p",
    "seed",
    "system_prompt",
    "prompt",
    "score_method",
    "extra_body",
    "roles",
)
# The provenance fields a record copies as they are, in the record's order.
OUTCOME_FIELDS = (
    "score",
    "log_score",
    "score_mode",
    "reference_used",
    "closed_by",
    "answer_teacher",
    "answer_trainable",
)


def settings_hash(settings: dict[str, Any]) -> str:
    """A short, stable hash of the decoding settings (canonical JSON, sha256)."""
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _teacher_settings(teacher: Any) -> dict[str, Any]:
    config = getattr(teacher, "config", None)
    if config is None:
        return {"name": teacher.name}
    dumped = config.model_dump(mode="json", include=set(TEACHER_DECODING_FIELDS))
    if isinstance(dumped.get("roles"), list):
        dumped["roles"] = sorted(dumped["roles"])
    return {"name": teacher.name, **dumped}


def job_settings(ensemble: str, job: DecodeJob) -> dict[str, Any]:
    """Everything that decides how a trace is searched for: options, teachers, scorers."""
    return {
        "ensemble": ensemble,
        "options": job.options.model_dump(mode="json"),
        "proposers": [_teacher_settings(t) for t in job.proposers],
        "scorers": [_teacher_settings(t) for t in job.scorers],
        "scorer_weights": dict(sorted(job.scorer_weights.items())),
    }


def _token_usage(prompt_tokens: int, reasoning_tokens: int, answer_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "reasoning_tokens": reasoning_tokens,
        "answer_tokens": answer_tokens,
    }


def _timings(
    cord: Mapping[str, Any], started_at: float, finished_at: float, **extra: float
) -> dict[str, Any]:
    return {
        "started_at": round(started_at, 3),
        "finished_at": round(finished_at, 3),
        "wall_s": cord.get("wall_s"),
        "answer_wait_s": cord.get("answer_wait_s"),
        **extra,
        "rounds": cord.get("rounds", []),
    }


def _layout(
    head: dict[str, Any],
    cord: Mapping[str, Any],
    *,
    usage: dict[str, int],
    timings: dict[str, Any],
    alternatives: list[dict[str, Any]],
    settings: dict[str, Any],
    source: str,
) -> dict[str, Any]:
    """The record: `head` (ids, messages, the trace and answer), then the provenance `cord`
    (``decode_provenance``'s rendering, or the ``cord`` object of a proxy's answer)."""
    return {
        "schema": SCHEMA,
        **head,
        "request": dict(cord.get("request") or {}),  # the recorded fields (request_fields.py)
        **{key: cord.get(key) for key in OUTCOME_FIELDS},
        "steps": cord.get("steps", []),
        "path": cord.get("path"),
        "search": cord.get("search"),
        "teachers": cord.get("teachers", []),
        "usage": usage,
        "cost_usd": cord.get("cost_usd", 0.0),
        "timings": timings,
        "failures": cord.get("failures", []),
        "dropped": list(cord.get("dropped", [])),
        "alternatives": alternatives,
        "settings": settings,
        "settings_hash": settings_hash(settings),
        "source": source,
    }


def trace_record(
    request_id: str,
    ensemble: str,
    job: DecodeJob,
    result: DecodeResult,
    *,
    problem_id: Any = None,
) -> dict[str, Any]:
    """The dataset record of one finished decode of `job` on the ensemble `ensemble` (its best
    trace, others as alternatives)."""
    best = result.best
    cord = decode_provenance(result, drop_nulls=True, tree=True)
    finished = time.time()
    head = {
        "id": problem_id if problem_id is not None else request_id,
        "request_id": request_id,
        "ensemble": ensemble,
        "messages": [m.model_dump(mode="json") for m in job.conversation],
        "reference_answer": job.reference_answer,
        "reasoning": best.reasoning,
        "answer": best.answer,
        "finish_reason": best.answer_finish_reason,
    }
    return _layout(
        head,
        cord,
        usage=_token_usage(result.prompt_tokens, best.reasoning_tokens, best.answer_tokens),
        timings=_timings(cord, finished - result.wall_s, finished),
        alternatives=[alternative(t) for t in result.traces[1:]],
        settings=job_settings(ensemble, job),
        source="engine",
    )


def record_from_completion(
    body: dict[str, Any],
    *,
    problem_id: Any,
    messages: list[dict[str, Any]],
    reference_answer: str | None,
    requested: dict[str, Any],
    started_at: float,
) -> dict[str, Any]:
    """A record built from a proxy's chat completion (``distill --url``).

    The proxy's answer does not carry its full settings, so `settings` holds what was asked
    for (ensemble and `cord` options) and the hash is of that. Its ``search`` and ``path``
    are there when the request asked for ``include_candidates`` (else null).
    """
    choice = body["choices"][0]
    message = choice["message"]
    cord = body.get("cord") or {}
    cord = {**cord, "failures": clean(cord.get("failures", []))}
    usage = body.get("usage") or {}
    reasoning_tokens = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens", 0)
    finished = time.time()
    head = {
        "id": problem_id,
        "request_id": body.get("id"),
        "ensemble": cord.get("ensemble", body.get("model")),
        "messages": messages,
        "reference_answer": reference_answer,
        "reasoning": message.get("reasoning_content") or message.get("reasoning") or "",
        "answer": message.get("content") or "",
        "finish_reason": choice.get("finish_reason"),
    }
    return _layout(
        head,
        cord,
        usage=_token_usage(
            usage.get("prompt_tokens", 0),
            reasoning_tokens,
            usage.get("completion_tokens", 0) - reasoning_tokens,
        ),
        timings=_timings(cord, started_at, finished, request_s=round(finished - started_at, 3)),
        alternatives=[],
        settings=requested,
        source="proxy",
    )
