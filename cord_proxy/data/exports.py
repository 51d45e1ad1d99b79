"""``cord-proxy export``: trace records (distill output or the proxy's sink) to training formats.

- ``trl``: TRL's conversational format, ``{"messages": [...]}``; the assistant turn holds the
  trace inline: ``<think>\\n{reasoning}\\n</think>\\n\\n{answer}``.
- ``sharegpt``: ``{"id", "conversations": [{"from": "system"|"human"|"gpt", "value"}]}``, the
  same inline assistant turn.
- ``openai-batch``: lines of an OpenAI Batch output file, ``{"id", "custom_id", "response":
  {"status_code", "request_id", "body": chat.completion}, "error"}``, the trace in
  ``message.reasoning_content`` as the proxy answers it.

Records are read tolerantly (a partial last line and unreadable lines are skipped and
counted), de-duplicated by ``id`` (the first one is kept), and the output file is replaced
atomically.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cord_proxy.completion import (
    chat_completion,
    completion_choice,
    inline_content,
    usage_counts,
)
from cord_proxy.data.jsonl import ReadReport, encode_line, iter_jsonl

FORMATS = ("trl", "sharegpt", "openai-batch")
USAGE_FIELDS = ("prompt_tokens", "reasoning_tokens", "answer_tokens")
SHAREGPT_ROLES = {"system": "system", "developer": "system", "user": "human", "assistant": "gpt"}


class ExportError(Exception):
    """The export cannot run (missing input, unknown format); exit status 2."""


def _inline(record: dict[str, Any]) -> str:
    return inline_content(record["reasoning"], record["answer"])


def _turns(record: dict[str, Any]) -> list[dict[str, str]]:
    return [
        {"role": "system" if m["role"] == "developer" else m["role"], "content": m["content"]}
        for m in record["messages"]
    ]


def to_trl(record: dict[str, Any]) -> dict[str, Any]:
    return {"messages": [*_turns(record), {"role": "assistant", "content": _inline(record)}]}


def to_sharegpt(record: dict[str, Any]) -> dict[str, Any]:
    conversations = [
        {"from": SHAREGPT_ROLES[m["role"]], "value": m["content"]} for m in record["messages"]
    ]
    conversations.append({"from": "gpt", "value": _inline(record)})
    return {"id": str(record["id"]), "conversations": conversations}


def to_openai_batch(record: dict[str, Any]) -> dict[str, Any]:
    """The record as a line of a Batch output file: its answer as a chat completion."""
    request_id = str(record.get("request_id") or record["id"])
    usage = record.get("usage") or {}
    message = {
        "role": "assistant",
        "content": record["answer"],
        "reasoning_content": record["reasoning"],
    }
    finished_at = (record.get("timings") or {}).get("finished_at") or 0
    body = chat_completion(
        request_id,
        record.get("ensemble"),
        int(finished_at),
        [completion_choice(0, message, record.get("finish_reason") or "stop")],
        usage_counts(
            *(int(usage.get(key) or 0) for key in USAGE_FIELDS),
            cost=_float(record.get("cost_usd")) or 0.0,
        ),
        {
            "score": _float(record.get("score")),
            "reference_used": bool(record.get("reference_used")),
            "steps": len(record.get("steps") or []),
            "cost_usd": _float(record.get("cost_usd")) or 0.0,
            "settings_hash": record.get("settings_hash"),
        },
    )
    return batch_line(record, body)


def batch_line(record: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """A line of a Batch output file: the record's ids around a chat completion `body`."""
    request_id = str(record.get("request_id") or record["id"])
    digest = hashlib.sha256(f"{record['id']}|{request_id}".encode()).hexdigest()[:24]
    return {
        "id": f"batch_req_{digest}",
        "custom_id": str(record["id"]),
        "response": {"status_code": 200, "request_id": request_id, "body": body},
        "error": None,
    }


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


CONVERTERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "trl": to_trl,
    "sharegpt": to_sharegpt,
    "openai-batch": to_openai_batch,
}


def record_problem(record: Any) -> str | None:
    """Why a record cannot be exported, or None."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if record.get("id") is None:
        return "no 'id'"
    messages = record.get("messages")
    if (
        not isinstance(messages, list)
        or not messages
        or not all(
            isinstance(m, dict)
            and m.get("role") in SHAREGPT_ROLES
            and isinstance(m.get("content"), str)
            for m in messages
        )
    ):
        return "'messages' is not a list of {role, content}"
    if not isinstance(record.get("reasoning"), str) or not isinstance(record.get("answer"), str):
        return "no 'reasoning' and 'answer' strings"
    return None


@dataclass
class ExportCounts:
    written: int = 0
    duplicates: int = 0
    skipped: int = 0
    partial_tail: bool = False

    def render(self, output: str | Path, format_name: str) -> str:
        extra = f", {self.duplicates} duplicate ids dropped" if self.duplicates else ""
        extra += f", {self.skipped} unusable lines skipped" if self.skipped else ""
        extra += ", a partial last line ignored" if self.partial_tail else ""
        return f"exported {self.written} records to {output} ({format_name}){extra}"


def convert(
    lines: Iterable[tuple[int, Any]],
    format_name: str,
    counts: ExportCounts,
    warn: Callable[[str], None],
) -> Iterable[dict[str, Any]]:
    converter = CONVERTERS[format_name]
    seen: set[str] = set()
    for number, record in lines:
        problem = record_problem(record)
        if problem is not None:
            counts.skipped += 1
            warn(f"line {number}: skipped: {problem}")
            continue
        key = str(record["id"])
        if key in seen:
            counts.duplicates += 1
            continue
        seen.add(key)
        counts.written += 1
        yield converter(record)


def export_file(
    input_path: str | Path,
    output_path: str | Path,
    format_name: str,
    warn: Callable[[str], None] | None = None,
) -> ExportCounts:
    """Convert a traces file; the output is replaced atomically."""
    if format_name not in CONVERTERS:
        raise ExportError(f"unknown format {format_name!r} (formats: {', '.join(FORMATS)})")
    source, target = Path(input_path), Path(output_path)
    if not source.is_file():
        raise ExportError(f"input {source} does not exist")
    warn = warn or (lambda text: print(f"cord-proxy export: {source}: {text}", file=sys.stderr))
    counts = ExportCounts()
    report = ReadReport()
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(descriptor, "wb") as out:
            for row in convert(iter_jsonl(source, report), format_name, counts, warn):
                out.write(encode_line(row))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    for number, reason in report.bad_lines:
        counts.skipped += 1
        warn(f"line {number}: skipped: {reason}")
    counts.partial_tail = report.partial_tail
    return counts


def run_command(args: Any) -> int:
    """``cord-proxy export`` (args from cli.py)."""
    try:
        counts = export_file(args.input, args.output, args.format)
    except ExportError as error:
        print(f"cord-proxy export: {error}", file=sys.stderr)
        return 2
    print(counts.render(args.output, args.format), flush=True)
    return 0
