"""JSONL files: one JSON value a line, appended atomically, read back tolerantly.

Writes: the whole line goes down in one ``write`` on an ``O_APPEND`` descriptor, under an
``flock`` (several processes), then ``fsync``. A short write is rolled back, and a partial
tail left by a crash (power loss) is cut before the next append, so every
newline-terminated line is one whole record. Readers skip a partial line.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TAIL_CHUNK = 65536

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
