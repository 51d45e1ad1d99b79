"""Which problems a run has left to do: the input's problems less the ids already written.

A rerun after any interruption, even ``kill -9``, skips the ids already in the output (a
record is appended whole, atomically and fsync'd) and does the rest.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from cord_proxy.data.jsonl import ReadReport, read_records
from cord_proxy.distill.problems import Problem, read_problems
from cord_proxy.distill.summary import Summary

PREFIX = "cord-proxy distill: "


def load_problems(path: Path, summary: Summary, stream: TextIO) -> list[Problem]:
    """The input's problems; each bad line is counted in `summary` and reported by number."""
    problems, summary.bad_lines = read_problems(path)
    summary.problems = len(problems)
    for line, reason in summary.bad_lines:
        print(f"{PREFIX}{path}:{line}: skipped: {reason}", file=stream)
    return problems


def done_ids(paths: Iterable[Path], stream: TextIO) -> set[str]:
    """The ids of the records in `paths`; a partial last line or a bad line is reported."""
    done: set[str] = set()
    for path in paths:
        report = ReadReport()
        done |= {str(r.get("id")) for r in read_records(path, report)}
        if report.partial_tail:
            print(
                f"{PREFIX}{path}: a partial last line (an interrupted write) is ignored "
                "and will be cut",
                file=stream,
            )
        for line, reason in report.bad_lines:
            print(f"{PREFIX}{path}:{line}: unreadable record ignored: {reason}", file=stream)
    return done


def pending(
    problems: list[Problem], done: set[str], summary: Summary, where: str, stream: TextIO
) -> list[Problem]:
    """The problems whose ids are not `done` (found in `where`); the others are counted."""
    todo = [p for p in problems if p.key not in done]
    summary.already_done = len(problems) - len(todo)
    if summary.already_done:
        print(
            f"{PREFIX}resuming: {summary.already_done} of {len(problems)} already in {where}, "
            f"{len(todo)} to do",
            file=stream,
        )
    return todo
