"""Reading a vLLM completion's answer to a scoring request: its choices, the
log-probabilities asked for, and token id lists, each checked, so that a malformed answer is
a `TeacherProtocolError` naming the teacher and never a wrong score."""

from __future__ import annotations

import math
from typing import Any

from cord_proxy.errors import TeacherProtocolError


def first_choice(data: dict[str, Any], teacher: str) -> dict[str, Any]:
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise TeacherProtocolError(teacher, "response has no choices")
    choice: dict[str, Any] = choices[0]
    return choice


def indexed_choices(data: dict[str, Any], count: int, teacher: str) -> list[dict[str, Any]]:
    """The choices of a many-prompt completion, one per prompt, in prompt order."""
    choices = data.get("choices")
    if not isinstance(choices, list) or len(choices) != count:
        raise TeacherProtocolError(teacher, f"expected {count} choices, one per prompt")
    if not all(isinstance(c, dict) and isinstance(c.get("index"), int) for c in choices):
        raise TeacherProtocolError(teacher, "a choice has no integer index")
    ordered = sorted(choices, key=lambda c: int(c["index"]))
    if [c["index"] for c in ordered] != list(range(count)):
        raise TeacherProtocolError(teacher, "the choices' indices do not match the prompts")
    return ordered


def asked_logprob(choice: dict[str, Any], token: int, teacher: str) -> float:
    """The value of `token` among a choice's requested log-probabilities."""
    logprobs = choice.get("logprobs")
    top = logprobs.get("top_logprobs") if isinstance(logprobs, dict) else None
    first = top[0] if isinstance(top, list) and top else None
    if not isinstance(first, dict) or f"token_id:{token}" not in first:
        raise TeacherProtocolError(teacher, f"no log-probability came back for token {token}")
    return finite_logprob(first[f"token_id:{token}"], teacher)


def first_choice_logprobs(data: dict[str, Any]) -> dict[str, Any]:
    choices = data.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else None
    logprobs = choice.get("logprobs") if isinstance(choice, dict) else None
    return logprobs if isinstance(logprobs, dict) else {}


def entry_logprob(entry: Any, token: int, teacher: str) -> float:
    """One ``prompt_logprobs`` entry, ``{token_id: {logprob, ...}}``, for a known token."""
    info = entry.get(str(token)) if isinstance(entry, dict) else None
    if not isinstance(info, dict):
        raise TeacherProtocolError(teacher, f"prompt_logprobs have no entry for token {token}")
    return finite_logprob(info.get("logprob"), teacher)


def finite_logprob(value: Any, teacher: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TeacherProtocolError(teacher, "a log-probability is not a number")
    number = float(value)
    if not (math.isfinite(number) and number <= 0.0):
        raise TeacherProtocolError(teacher, f"a log-probability is {number!r}")
    return number


_INTEGER = frozenset({int})  # a JSON integer parses to exactly int (a bool is not one)


def int_list(value: Any, teacher: str, what: str) -> list[int]:
    if not isinstance(value, list) or not _INTEGER.issuperset(map(type, value)):
        raise TeacherProtocolError(teacher, f"{what} is not a list of token ids")
    return value
