"""The dataset sink and trace records: one JSON line per finished decode, appended atomically.

A record (schema ``cord-trace/1``) holds the request id, ensemble and messages, the reference
answer, the trace (``reasoning``) and final ``answer``, per-step provenance and scores, the
teachers with their tokens and cost, timings, and a hash of the decoding settings. The other
finished beams of the decode, if any, are kept under ``alternatives``.

Writes: the whole line goes down in one ``write`` on an ``O_APPEND`` descriptor, under an
``asyncio`` lock (one process) and an ``flock`` (several processes), then ``fsync``. A short
write is rolled back, and a partial tail left by a crash (power loss) is cut before the next
append, so every newline-terminated line is one whole record. Readers skip a partial line.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import math
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cord_proxy.config import DatasetConfig
from cord_proxy.redact import clean

if TYPE_CHECKING:
    from cord_proxy.decoding.options import DecodeOptions
    from cord_proxy.decoding.trace import DecodeResult, FinishedTrace
    from cord_proxy.runtime import ChatJob

TraceSink = Callable[[dict[str, Any]], Awaitable[None]]
SCHEMA = "cord-trace/1"
TAIL_CHUNK = 65536
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


# --- appending -------------------------------------------------------------------------------


def encode_line(record: dict[str, Any]) -> bytes:
    """One record as one UTF-8 line of strict JSON (a non-finite float becomes null)."""
    try:
        text = json.dumps(record, ensure_ascii=False, allow_nan=False, default=str)
    except ValueError:
        text = json.dumps(finite(record), ensure_ascii=False, allow_nan=False, default=str)
    return (text + "\n").encode()


def finite(value: Any) -> Any:
    """The value with every NaN or infinite float replaced by None, for strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def _cut_partial_tail(descriptor: int) -> None:
    """Truncate bytes after the last newline: a line a crash left half written."""
    size = os.fstat(descriptor).st_size
    if size == 0 or os.pread(descriptor, 1, size - 1) == b"\n":
        return
    end = size
    while end > 0:
        start = max(0, end - TAIL_CHUNK)
        chunk = os.pread(descriptor, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            os.ftruncate(descriptor, start + newline + 1)
            return
        end = start
    os.ftruncate(descriptor, 0)


def append_line(path: str | Path, line: bytes, *, fsync: bool = True) -> None:
    """Append one whole line atomically (blocking; call it from a thread in async code)."""
    descriptor = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        _cut_partial_tail(descriptor)
        before = os.fstat(descriptor).st_size
        try:
            written = os.write(descriptor, line)
        except OSError:
            os.ftruncate(descriptor, before)
            raise
        if written != len(line):
            os.ftruncate(descriptor, before)
            raise OSError(f"short write to {path}: {written} of {len(line)} bytes")
        if fsync:
            os.fsync(descriptor)
    finally:
        os.close(descriptor)  # closing releases the flock


def append_record(path: str | Path, record: dict[str, Any], *, fsync: bool = True) -> None:
    append_line(path, encode_line(record), fsync=fsync)


class JsonlSink:
    """Appends one JSON line per trace with a single write; appends never interleave."""

    def __init__(self, path: str | Path, *, fsync: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._lock = asyncio.Lock()

    async def __call__(self, record: dict[str, Any]) -> None:
        line = encode_line(record)
        async with self._lock:
            await asyncio.to_thread(append_line, self.path, line, fsync=self.fsync)


def sink_for(config: DatasetConfig) -> TraceSink | None:
    return JsonlSink(config.path) if config.path else None


# --- reading ---------------------------------------------------------------------------------


@dataclass
class ReadReport:
    """What a tolerant read skipped: unparsable lines by number, and a partial last line."""

    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    partial_tail: bool = False


def iter_jsonl(
    path: str | Path, report: ReadReport | None = None, *, written_by_us: bool = True
) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` for every parsable line; blank lines are ignored.

    In a file this module writes, a last line without its newline is a write a crash cut
    short: it is skipped (and noted in `report`), never returned, even when it happens to
    parse, because the next append cuts it. Other files (``written_by_us=False``: inputs
    written by hand or by other tools) may end without a newline.
    """
    report = report if report is not None else ReadReport()
    with open(path, "rb") as file:
        for number, raw in enumerate(file, start=1):
            if written_by_us and not raw.endswith(b"\n"):
                if raw.strip():
                    report.partial_tail = True
                break
            if not raw.strip():
                continue
            try:
                yield number, json.loads(raw)
            except (UnicodeDecodeError, ValueError) as error:
                report.bad_lines.append((number, f"not valid JSON: {error}"[:200]))


def read_records(path: str | Path, report: ReadReport | None = None) -> list[dict[str, Any]]:
    """Every whole record of a traces file (a missing file has none)."""
    if not Path(path).exists():
        return []
    report = report if report is not None else ReadReport()
    records = []
    for number, value in iter_jsonl(path, report):
        if isinstance(value, dict):
            records.append(value)
        else:
            report.bad_lines.append((number, "not a JSON object"))
    return records


# --- records ---------------------------------------------------------------------------------


def settings_hash(settings: dict[str, Any]) -> str:
    """A short, stable hash of the decoding settings (canonical JSON, sha256)."""
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:16]


def plan_settings(plan: ChatJob) -> dict[str, Any]:
    """Everything that decides how a trace is searched for: options, teachers, scorers."""

    def teacher(t: Any) -> dict[str, Any]:
        config = getattr(t, "config", None)
        if config is None:
            return {"name": t.name}
        dumped = config.model_dump(mode="json", include=set(TEACHER_DECODING_FIELDS))
        if isinstance(dumped.get("roles"), list):
            dumped["roles"] = sorted(dumped["roles"])
        return {"name": t.name, **dumped}

    return {
        "ensemble": plan.ensemble,
        "options": _options(plan.decode.options),
        "proposers": [teacher(t) for t in plan.decode.proposers],
        "scorers": [teacher(t) for t in plan.decode.scorers],
        "scorer_weights": dict(sorted(plan.decode.scorer_weights.items())),
    }


def _options(options: DecodeOptions) -> dict[str, Any]:
    return options.model_dump(mode="json")


def _step(step: Any) -> dict[str, Any]:
    data: dict[str, Any] = step.model_dump(mode="json", exclude_none=True)
    return data


def _alternative(trace: FinishedTrace) -> dict[str, Any]:
    return {
        "reasoning": trace.reasoning,
        "answer": trace.answer,
        "score": trace.score,
        "log_score": trace.log_score,
        "closed_by": trace.closed_by,
        "answer_teacher": trace.answer_teacher,
        "steps": [_step(s) for s in trace.steps],
    }


def trace_record(
    request_id: str, plan: ChatJob, result: DecodeResult, *, problem_id: Any = None
) -> dict[str, Any]:
    """The dataset record of one finished decode (its best trace, others as alternatives)."""
    best = result.best
    settings = plan_settings(plan)
    finished = time.time()
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "id": problem_id if problem_id is not None else request_id,
        "request_id": request_id,
        "ensemble": plan.ensemble,
        "messages": [m.model_dump(mode="json") for m in plan.decode.conversation],
        "reference_answer": plan.decode.reference_answer,
        "reasoning": best.reasoning,
        "answer": best.answer,
        "finish_reason": best.answer_finish_reason,
        "score": best.score,
        "log_score": best.log_score,
        "score_mode": result.score_mode,
        "reference_used": result.reference_used,
        "closed_by": best.closed_by,
        "answer_teacher": best.answer_teacher,
        "steps": [_step(s) for s in best.steps],
        "teachers": [u.model_dump(mode="json") for u in result.teachers],
        "usage": {
            "prompt_tokens": result.prompt_tokens,
            "reasoning_tokens": best.reasoning_tokens,
            "answer_tokens": best.answer_tokens,
        },
        "cost_usd": sum(u.cost_usd for u in result.teachers),
        "timings": {
            "started_at": round(finished - result.wall_s, 3),
            "finished_at": round(finished, 3),
            "wall_s": result.wall_s,
            "answer_wait_s": result.answer_wait_s,
            "rounds": [r.model_dump(mode="json") for r in result.rounds],
        },
        "failures": [clean(f.model_dump(mode="json")) for f in result.failures],
        "dropped": list(result.dropped),
        "alternatives": [_alternative(t) for t in result.traces[1:]],
        "settings": settings,
        "settings_hash": settings_hash(settings),
        "source": "engine",
    }
    return record


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
    for (ensemble and `cord` options) and the hash is of that.
    """
    choice = body["choices"][0]
    message = choice["message"]
    cord = body.get("cord") or {}
    usage = body.get("usage") or {}
    details = usage.get("completion_tokens_details") or {}
    reasoning = message.get("reasoning_content") or message.get("reasoning") or ""
    finished = time.time()
    return {
        "schema": SCHEMA,
        "id": problem_id,
        "request_id": body.get("id"),
        "ensemble": cord.get("ensemble", body.get("model")),
        "messages": messages,
        "reference_answer": reference_answer,
        "reasoning": reasoning,
        "answer": message.get("content") or "",
        "finish_reason": choice.get("finish_reason"),
        "score": cord.get("score"),
        "log_score": cord.get("log_score"),
        "score_mode": cord.get("score_mode"),
        "reference_used": cord.get("reference_used"),
        "closed_by": cord.get("closed_by"),
        "answer_teacher": cord.get("answer_teacher"),
        "steps": cord.get("steps", []),
        "teachers": cord.get("teachers", []),
        "usage": {
            "prompt_tokens": usage.get("prompt_tokens", 0),
            "reasoning_tokens": details.get("reasoning_tokens", 0),
            "answer_tokens": usage.get("completion_tokens", 0) - details.get("reasoning_tokens", 0),
        },
        "cost_usd": cord.get("cost_usd", 0.0),
        "timings": {
            "started_at": round(started_at, 3),
            "finished_at": round(finished, 3),
            "wall_s": cord.get("wall_s"),
            "request_s": round(finished - started_at, 3),
            "rounds": cord.get("rounds", []),
        },
        "failures": clean(cord.get("failures", [])),
        "dropped": [],
        "alternatives": [],
        "settings": requested,
        "settings_hash": settings_hash(requested),
        "source": "proxy",
    }
