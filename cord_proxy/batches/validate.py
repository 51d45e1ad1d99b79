"""A batch's input file checked line by line, as OpenAI's batch validation does.

Each line is ``{"custom_id", "method": "POST", "url", "body"}``, its ``url`` the batch's
endpoint: ``/v1/chat/completions``, whose ``body`` is a chat completion request, or
``/v1/responses``, whose ``body`` is a Responses create request (checked as the route checks
it, and converted to its chat request as the route converts it; ``stream``, ``background``
and ``previous_response_id`` are refused in a line). Either way ``body.cord`` carries the
decoding options and the reference answer. Every problem is named with its line number; any
problem fails the batch. What can only fail when it runs (an unknown ensemble, a bad option
value) fails that line alone, in the error file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import ValidationError

from cord_proxy.errors import CordError, field_problems, format_validation_error
from cord_proxy.protocol import ChatCompletionRequest, param_name
from cord_proxy.request_fields import refused_field, without_refused
from cord_proxy.responses.conversion import chat_request, conversation
from cord_proxy.responses.request import ResponseRequest, parse_response_request

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
ENDPOINTS = (CHAT, RESPONSES)
# A batch line is one whole request, run once, later: no stream, nothing to poll, and no
# stored conversation that may be gone (or changed hands) by the time the line runs.
NOT_IN_A_LINE = {
    "stream": "a batch request cannot stream",
    "background": "a batch request is already run in the background",
    "previous_response_id": "a batch request cannot continue a stored response: send the "
    "whole conversation as its input",
}

MAX_LINES = 50_000
MAX_ERRORS = 100
MAX_CUSTOM_ID = 512


@dataclass
class InputCheck:
    """The valid lines ``(custom_id, body JSON)`` and every problem found."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def fail(self, line: int | None, code: str, message: str, param: str | None = None) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"code": code, "message": message, "param": param, "line": line})


class LineProblem(ValueError):
    def __init__(self, code: str, message: str, param: str | None = None):
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


def check_input(path: Path, endpoint: str, max_line_bytes: int) -> InputCheck:
    """Read and check the whole input file (blocking: run it in a thread)."""
    check = InputCheck()
    seen: dict[str, int] = {}
    try:
        with path.open("rb") as file:
            for number, raw in _lines(file, max_line_bytes, check):
                _check_line(check, seen, number, raw, endpoint)
    except OSError as error:
        check.fail(None, "file_unreadable", f"the input file cannot be read: {error.strerror}")
    if not check.lines and not check.errors:
        check.fail(None, "empty_file", "the input file holds no requests")
    if len(check.lines) > MAX_LINES:
        check.fail(None, "too_many_requests", f"a batch holds at most {MAX_LINES} requests")
    return check


def _lines(file: BinaryIO, limit: int, check: InputCheck) -> Any:
    """``(line number, bytes)`` of every non-blank line; a line over `limit` is an error."""
    number = 0
    while raw := file.readline(limit + 1):
        number += 1
        if len(raw) > limit and not raw.endswith(b"\n"):
            check.fail(number, "line_too_long", f"line {number} is over {limit} bytes")
            while (rest := file.readline(1 << 20)) and not rest.endswith(b"\n"):
                pass
            continue
        if raw.strip():
            yield number, raw


def _check_line(
    check: InputCheck, seen: dict[str, int], number: int, raw: bytes, endpoint: str
) -> None:
    try:
        custom_id, body = parse_line(raw, endpoint)
    except LineProblem as problem:
        check.fail(number, problem.code, f"line {number}: {problem.message}", problem.param)
        return
    if custom_id in seen:
        message = (
            f"line {number}: duplicate custom_id {custom_id!r} (first on line {seen[custom_id]})"
        )
        check.fail(number, "duplicate_custom_id", message, "custom_id")
        return
    seen[custom_id] = number
    check.lines.append((custom_id, json.dumps(body, ensure_ascii=False)))


def parse_line(raw: bytes, endpoint: str) -> tuple[str, dict[str, Any]]:
    """One request line as ``(custom_id, body)``; `LineProblem` says what is wrong."""
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise LineProblem("invalid_json_line", f"not valid JSON ({error})"[:300]) from None
    if not isinstance(value, dict):
        raise LineProblem("invalid_json_line", "not a JSON object")
    custom_id = value.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id.strip() or len(custom_id) > MAX_CUSTOM_ID:
        raise LineProblem(
            "missing_custom_id",
            f"'custom_id' must be a non-empty string of at most {MAX_CUSTOM_ID} characters",
            "custom_id",
        )
    if value.get("method") != "POST":
        raise LineProblem("invalid_method", "'method' must be 'POST'", "method")
    if value.get("url") != endpoint:
        raise LineProblem("invalid_url", f"'url' must be the batch's endpoint {endpoint}", "url")
    body = value.get("body")
    if not isinstance(body, dict):
        raise LineProblem("invalid_body", "'body' must be a JSON object", "body")
    if endpoint == RESPONSES:
        _check_responses_body(body)
    else:
        _check_body(body)
    return custom_id, body


def responses_chat_request(body: dict[str, Any]) -> tuple[ResponseRequest, ChatCompletionRequest]:
    """A ``/v1/responses`` line's body parsed, and the chat request it decodes as; a
    `CordError` (400) names the Responses field."""
    parsed = parse_response_request(body)
    return parsed, chat_request(parsed, conversation(parsed))


def _check_responses_body(body: dict[str, Any]) -> None:
    for name, refusal in NOT_IN_A_LINE.items():
        if body.get(name):
            raise LineProblem("invalid_request", refusal, f"body.{name}")
    try:
        responses_chat_request(body)
    except CordError as error:
        param = f"body.{error.param}" if error.param else "body"
        message = f"invalid body: {error.message}"[:500]
        raise LineProblem("invalid_request", message, param) from None


def _check_body(body: dict[str, Any]) -> None:
    refused = refused_field(body)
    if refused is not None:
        raise LineProblem("invalid_request", refused.refusal(), f"body.{refused.name}")
    if body.get("stream"):
        raise LineProblem("invalid_request", "a batch request cannot stream", "body.stream")
    try:
        ChatCompletionRequest.model_validate(without_refused(body))
    except ValidationError as error:
        param = param_name(("body", *field_problems(error)[0].location))
        message = "; ".join(format_validation_error(error))
        raise LineProblem("invalid_request", f"invalid body: {message}"[:500], param) from None
