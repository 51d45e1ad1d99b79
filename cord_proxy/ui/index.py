"""A trace file read in pages: a byte-offset index of its lines, summaries built on demand.

Opening a file scans it once for line ends (no JSON is parsed), so the first page is read
with a few ``pread`` calls whatever the file's size. Sorting, filtering and the per-file
statistics need a summary of every record; those are parsed once, on first use, and kept.
A file that grows (the proxy's sink) is indexed from where the last scan stopped; one that
shrinks or is replaced is indexed anew. A partial last line is not a record until it ends.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

CHUNK_BYTES = 8 << 20
NEWLINE = 10


@dataclass(frozen=True, slots=True)
class Summary:
    """What the list, its sorting and filtering, and the file statistics need of a record."""

    line: int
    id: str
    question: str
    score: float | None
    finish_reason: str
    closed_by: str
    steps: int
    failures: int
    teachers: tuple[str, ...]
    selected: dict[str, int] = field(default_factory=dict)
    proposals: dict[str, int] = field(default_factory=dict)
    wall_s: float | None = None
    cost_usd: float | None = None
    readable: bool = True

    def row(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "id": self.id,
            "question": self.question,
            "score": self.score,
            "finish_reason": self.finish_reason,
            "closed_by": self.closed_by,
            "steps": self.steps,
            "failures": self.failures,
            "teachers": list(self.teachers),
            "wall_s": self.wall_s,
            "cost_usd": self.cost_usd,
            "readable": self.readable,
        }


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _question(record: dict[str, Any]) -> str:
    messages = record.get("messages")
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            text = content if isinstance(content, str) else orjson.dumps(content).decode()
            return text[:160]
    return ""


def _per_teacher(record: dict[str, Any], key: str) -> dict[str, int]:
    teachers = record.get("teachers")
    if not isinstance(teachers, list):
        return {}
    counts: dict[str, int] = {}
    for teacher in teachers:
        if isinstance(teacher, dict) and isinstance(teacher.get("name"), str):
            value = teacher.get(key)
            counts[teacher["name"]] = value if isinstance(value, int) else 0
    return counts


def _proposers(steps: list[Any]) -> tuple[str, ...]:
    names: dict[str, None] = {}
    for step in steps:
        if isinstance(step, dict):
            for name in step.get("proposers") or ():
                names[str(name)] = None
    return tuple(names)


def summarize(line: int, raw: bytes) -> Summary:
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        record = None
    if not isinstance(record, dict):
        return Summary(line, "", "", None, "", "", 0, 0, (), readable=False)
    found_steps = record.get("steps")
    steps: list[Any] = found_steps if isinstance(found_steps, list) else []
    failures = record.get("failures")
    found_timings = record.get("timings")
    timings: dict[str, Any] = found_timings if isinstance(found_timings, dict) else {}
    return Summary(
        line=line,
        id=str(record.get("id", "")),
        question=_question(record),
        score=_number(record.get("score")),
        finish_reason=str(record.get("finish_reason", "")),
        closed_by=str(record.get("closed_by", "")),
        steps=len(steps),
        failures=len(failures) if isinstance(failures, list) else 0,
        teachers=_proposers(steps),
        selected=_per_teacher(record, "selected"),
        proposals=_per_teacher(record, "proposals"),
        wall_s=_number(timings.get("wall_s")),
        cost_usd=_number(record.get("cost_usd")),
    )


class TraceIndex:
    """Line offsets of one JSONL file, and the summaries of its records once asked for."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.summary_lock = threading.Lock()
        self.starts = np.zeros(0, dtype=np.int64)
        self.ends = np.zeros(0, dtype=np.int64)
        self.scanned = 0
        self.identity: tuple[int, int] | None = None
        self.summaries: list[Summary] = []

    def __len__(self) -> int:
        return len(self.starts)

    def refresh(self) -> int:
        """Index what was appended since the last call; return the number of records."""
        with self.lock:
            try:
                stat = os.stat(self.path)
            except FileNotFoundError:
                self._reset(None)
                return 0
            identity = (stat.st_dev, stat.st_ino)
            if identity != self.identity or stat.st_size < self.scanned:
                self._reset(identity)
            if stat.st_size > self.scanned:
                self._scan(stat.st_size)
            return len(self.starts)

    def _reset(self, identity: tuple[int, int] | None) -> None:
        self.identity = identity
        self.starts = np.zeros(0, dtype=np.int64)
        self.ends = np.zeros(0, dtype=np.int64)
        self.scanned = 0
        self.summaries = []

    def _scan(self, size: int) -> None:
        starts: list[np.ndarray[Any, Any]] = [self.starts]
        ends: list[np.ndarray[Any, Any]] = [self.ends]
        line_start = self.scanned
        with open(self.path, "rb") as handle:
            handle.seek(self.scanned)
            position = self.scanned
            while position < size:
                chunk = handle.read(min(CHUNK_BYTES, size - position))
                if not chunk:
                    break
                newlines = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == NEWLINE)
                line_ends = newlines.astype(np.int64) + position
                line_starts = np.concatenate(([line_start], line_ends[:-1] + 1))
                if len(line_ends):
                    keep = line_ends - line_starts > 0
                    starts.append(line_starts[keep])
                    ends.append(line_ends[keep])
                    line_start = int(line_ends[-1]) + 1
                position += len(chunk)
        self.starts = np.concatenate(starts)
        self.ends = np.concatenate(ends)
        self.scanned = line_start

    def read(self, lines: list[int]) -> list[bytes]:
        with open(self.path, "rb") as handle:
            fd = handle.fileno()
            return [
                os.pread(fd, int(self.ends[i] - self.starts[i]), int(self.starts[i])) for i in lines
            ]

    def summarize_all(self) -> list[Summary]:
        """A summary of every record, parsing only the ones not yet summarised."""
        with self.lock:
            done = len(self.summaries)
            todo = list(range(done, len(self.starts)))
            for offset in range(0, len(todo), 4096):
                batch = todo[offset : offset + 4096]
                for line, raw in zip(batch, self.read(batch), strict=True):
                    self.summaries.append(summarize(line, raw))
            return list(self.summaries)

    def search(self, text: str) -> set[int]:
        """Lines whose raw JSON holds `text`, ASCII case ignored, JSON-escaped as stored."""
        needle = orjson.dumps(text)[1:-1].lower()
        found: set[int] = set()
        with self.lock:
            size, starts = self.scanned, self.starts
        with open(self.path, "rb") as handle:
            position = 0
            while position < size:
                handle.seek(position)
                chunk = handle.read(min(CHUNK_BYTES, size - position))
                cut = chunk.rfind(b"\n") + 1 if position + len(chunk) < size else len(chunk)
                cut = cut or len(chunk)
                found.update(_hits(chunk[:cut].lower(), needle, position, starts))
                position += cut
        return found


def _hits(chunk: bytes, needle: bytes, position: int, starts: np.ndarray[Any, Any]) -> list[int]:
    """Lines of `chunk` (at `position` in the file) holding `needle`; one find per line."""
    lines: list[int] = []
    at = chunk.find(needle)
    while at >= 0:
        line = int(np.searchsorted(starts, at + position, side="right")) - 1
        if line >= 0:
            lines.append(line)
        line_end = chunk.find(b"\n", at)
        if line_end < 0:
            break
        at = chunk.find(needle, line_end + 1)
    return lines
