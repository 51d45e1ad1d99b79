"""``cord-proxy export``: trace records (distill output or the proxy's sink) to training formats.

- ``trl``: TRL's conversational format, ``{"messages": [...]}``; the assistant turn holds the
  trace inline: ``<think>\\n{reasoning}\\n</think>\\n\\n{answer}``.
- ``sharegpt``: ``{"id", "conversations": [{"from": "system"|"human"|"gpt", "value"}]}``, the
  same inline assistant turn.
- ``openai-batch``: lines of an OpenAI Batch output file, ``{"id", "custom_id", "response":
  {"status_code", "request_id", "body": chat.completion}, "error"}``, the trace in
  ``message.reasoning_content`` as the proxy answers it.
- ``dpo``: step-level preference pairs from the record's search tree (preferences.py).
- ``prm``: TRL's stepwise supervision rows from the search tree (process_labels.py).

Records are read tolerantly (a partial last line and unreadable lines are skipped and
counted), de-duplicated by ``id`` (the first one is kept), and the output file is replaced
atomically. Text of a ``trainable = false`` teacher is left out: a record whose best trace
(steps or answer) holds some, for the record formats; a pair or row that holds some, for
``dpo`` and ``prm``. ``include_untrainable`` keeps it. A record is read and converted alone,
so memory stays flat on a large file (the ids seen are kept, for the de-duplication).
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
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
from cord_proxy.data.preferences import PairOptions, counted_preference_rows
from cord_proxy.data.process_labels import LabelOptions, counted_label_rows, prompt_text
from cord_proxy.data.search_tree import SearchTreeError, has_search_tree

RECORD_FORMATS = ("trl", "sharegpt", "openai-batch")  # one row per record
TREE_FORMATS = ("dpo", "prm")  # rows from the record's search tree
FORMATS = (*RECORD_FORMATS, *TREE_FORMATS)
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


def untrainable_text(record: dict[str, Any]) -> bool:
    """Whether the best trace holds text of a ``trainable = false`` teacher: a step or the
    answer. A record without these fields (an older file) counts as trainable."""
    steps = record.get("steps")
    return record.get("answer_trainable") is False or (
        isinstance(steps, list)
        and any(isinstance(s, dict) and s.get("trainable") is False for s in steps)
    )


@dataclass(frozen=True)
class ExportOptions:
    """The tree formats' settings (dpo: margin, pairs per step; prm: soft labels) and the
    terms-of-use override."""

    min_margin: float = 0.0
    pairs_per_step: int | None = None
    soft: bool = False
    include_untrainable: bool = False


ROW_UNITS = {"dpo": "pairs", "prm": "rows"}


@dataclass
class ExportCounts:
    written: int = 0  # rows written
    records: int = 0  # records converted (tree formats: those with a search tree)
    duplicates: int = 0
    skipped: int = 0  # unusable lines and unreadable search trees
    untrainable: int = 0  # what held untrainable text: records, or dpo pairs / prm rows
    no_search_tree: int = 0
    partial_tail: bool = False
    included_untrainable: bool = False

    def render(self, output: str | Path, format_name: str) -> str:
        unit = ROW_UNITS.get(format_name, "records")
        source = f" from {self.records} records" if format_name in ROW_UNITS else ""
        text = f"exported {self.written} {unit}{source} to {output} ({format_name})"
        if self.untrainable and self.included_untrainable:
            text += f", {self.untrainable} {unit} with text of a trainable = false teacher kept"
        elif self.untrainable:
            text += f", {self.untrainable} {unit} skipped: text of a trainable = false teacher"
        if self.no_search_tree:
            text += f", {self.no_search_tree} records without a search tree skipped"
        text += f", {self.duplicates} duplicate ids dropped" if self.duplicates else ""
        text += f", {self.skipped} unusable lines skipped" if self.skipped else ""
        return text + (", a partial last line ignored" if self.partial_tail else "")


def _tree_rows(
    record: dict[str, Any], format_name: str, options: ExportOptions, counts: ExportCounts
) -> list[dict[str, Any]]:
    """One record's dpo or prm rows (all or none: a broken tree raises SearchTreeError)."""
    if format_name == "dpo":
        pair_options = PairOptions(
            options.min_margin, options.pairs_per_step, options.include_untrainable
        )
        rows, untrainable = counted_preference_rows(record, _turns(record), pair_options)
    else:
        label_options = LabelOptions(options.soft, options.include_untrainable)
        rows, untrainable = counted_label_rows(record, prompt_text(_turns(record)), label_options)
    counts.untrainable += untrainable
    return rows


def _record_rows(
    record: dict[str, Any], format_name: str, options: ExportOptions, counts: ExportCounts
) -> list[dict[str, Any]]:
    if format_name in CONVERTERS:
        if untrainable_text(record):
            counts.untrainable += 1
            if not options.include_untrainable:
                return []
        counts.records += 1
        return [CONVERTERS[format_name](record)]
    if not has_search_tree(record):
        counts.no_search_tree += 1
        return []
    rows = _tree_rows(record, format_name, options, counts)
    counts.records += 1
    return rows


def convert(
    lines: Iterable[tuple[int, Any]],
    format_name: str,
    counts: ExportCounts,
    warn: Callable[[str], None],
    options: ExportOptions | None = None,
) -> Iterator[dict[str, Any]]:
    """The rows of every usable record, record by record."""
    options = options or ExportOptions()
    counts.included_untrainable = options.include_untrainable
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
        try:
            rows = _record_rows(record, format_name, options, counts)
        except SearchTreeError as error:
            counts.skipped += 1
            warn(f"line {number}: skipped: its search tree: {error}")
            continue
        counts.written += len(rows)
        yield from rows


def export_file(
    input_path: str | Path,
    output_path: str | Path,
    format_name: str,
    warn: Callable[[str], None] | None = None,
    options: ExportOptions | None = None,
) -> ExportCounts:
    """Convert a traces file; the output is replaced atomically."""
    if format_name not in FORMATS:
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
            rows = convert(iter_jsonl(source, report), format_name, counts, warn, options)
            for row in rows:
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


OPTION_FORMATS = {"min_margin": "dpo", "pairs_per_step": "dpo", "soft": "prm"}
UNTRAINABLE_WARNING = (
    "--include-untrainable: exporting text of teachers set trainable = false; "
    "their providers' terms may forbid training on it"
)


def options_of(args: Any) -> ExportOptions:
    """The export options of the command's arguments (ExportError: one that does not apply
    to the format, or a pair count under 1)."""
    given = {name: getattr(args, name, None) for name in OPTION_FORMATS}
    for name, value in given.items():
        if value not in (None, False) and OPTION_FORMATS[name] != args.format:
            flag = "--" + name.replace("_", "-")
            raise ExportError(f"{flag} applies to --format {OPTION_FORMATS[name]} only")
    if given["pairs_per_step"] is not None and given["pairs_per_step"] < 1:
        raise ExportError("--pairs-per-step must be at least 1")
    if given["min_margin"] is not None and not math.isfinite(given["min_margin"]):
        raise ExportError("--min-margin must be a finite number")
    return ExportOptions(
        min_margin=0.0 if given["min_margin"] is None else float(given["min_margin"]),
        pairs_per_step=given["pairs_per_step"],
        soft=bool(given["soft"]),
        include_untrainable=bool(getattr(args, "include_untrainable", False)),
    )


def run_command(args: Any) -> int:
    """``cord-proxy export`` (args from cli.py)."""
    try:
        options = options_of(args)
        if options.include_untrainable:
            print(f"cord-proxy export: warning: {UNTRAINABLE_WARNING}", file=sys.stderr)
        counts = export_file(args.input, args.output, args.format, options=options)
    except ExportError as error:
        print(f"cord-proxy export: {error}", file=sys.stderr)
        return 2
    print(counts.render(args.output, args.format), flush=True)
    return 0
