"""distill's input: one JSON object a line, ``{"id", "question" | "messages", "answer"}``.

``answer`` is the reference answer (without one the steps are scored without a reference);
an optional ``cord`` object overrides decoding options for that problem. Ids are compared as
strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cord_proxy.data.jsonl import ReadReport, iter_jsonl
from cord_proxy.distill.errors import DistillError

ROLES = ("system", "developer", "user", "assistant")


@dataclass(frozen=True)
class Problem:
    id: str | int
    line: int
    messages: list[dict[str, str]]
    answer: str | None
    cord: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return str(self.id)


def parse_problem(value: Any, line: int) -> Problem:
    """One input line as a problem; `ValueError` names what is wrong with it."""
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    problem_id = value.get("id")
    if isinstance(problem_id, bool) or not isinstance(problem_id, str | int):
        raise ValueError("'id' is missing or not a string or integer")
    if isinstance(problem_id, str) and not problem_id.strip():
        raise ValueError("'id' is empty")
    messages = _messages(value)
    answer = value.get("answer")
    if isinstance(answer, bool) or not isinstance(answer, str | int | float | None):
        raise ValueError("'answer' must be a string or a number")
    cord = value.get("cord") or {}
    if not isinstance(cord, dict):
        raise ValueError("'cord' must be an object")
    return Problem(problem_id, line, messages, None if answer is None else str(answer), cord)


def _messages(value: dict[str, Any]) -> list[dict[str, str]]:
    question, messages = value.get("question"), value.get("messages")
    if (question is None) == (messages is None):
        raise ValueError("give exactly one of 'question' and 'messages'")
    if question is not None:
        if not isinstance(question, str) or not question.strip():
            raise ValueError("'question' must be a non-empty string")
        return [{"role": "user", "content": question}]
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list")
    turns = []
    for index, message in enumerate(messages):
        if (
            not isinstance(message, dict)
            or message.get("role") not in ROLES
            or not isinstance(message.get("content"), str)
        ):
            raise ValueError(
                f"messages[{index}] needs a role ({', '.join(ROLES)}) and a string content"
            )
        turns.append({"role": message["role"], "content": message["content"]})
    if not any(t["role"] == "user" and t["content"].strip() for t in turns):
        raise ValueError("'messages' has no non-empty user turn")
    return turns


def read_problems(path: str | Path) -> tuple[list[Problem], list[tuple[int, str]]]:
    """The valid problems, and every bad line as ``(line number, reason)``."""
    report = ReadReport()
    problems: list[Problem] = []
    bad: list[tuple[int, str]] = []
    first_line: dict[str, int] = {}
    try:
        for line, value in iter_jsonl(path, report, written_by_us=False):
            try:
                problem = parse_problem(value, line)
            except ValueError as error:
                bad.append((line, str(error)))
                continue
            if problem.key in first_line:
                bad.append(
                    (
                        line,
                        f"duplicate id {problem.key!r} (first on line {first_line[problem.key]})",
                    )
                )
                continue
            first_line[problem.key] = line
            problems.append(problem)
    except OSError as error:
        raise DistillError(f"cannot read input {path}: {error.strerror or error}") from None
    bad += report.bad_lines
    return problems, sorted(bad)
