"""The one exception tree of cord-proxy.

Every error the proxy can report maps to an OpenAI error object
(``{"error": {"message", "type", "param", "code"}}``) and an HTTP status::

    CordError (500, server_error)
    +-- InvalidRequestError (400, invalid_request_error)   bad field, bad `cord` option
    |   +-- UnsupportedFieldError (400)                    a field the proxy cannot honour
    |   +-- ContextLengthExceededError (400)               the messages fill every context
    |   +-- RequestTooLargeError (413)
    |   +-- RequestTimeoutError (408)                      a request's body did not arrive in time
    +-- AuthenticationError (401, authentication_error)
    +-- ModelNotFoundError (404, invalid_request_error / model_not_found)
    +-- NotFoundError (404, invalid_request_error / not_found)   no such file or batch
    +-- RateLimitError (429, rate_limit_error)             over the concurrency limit; Retry-After
    +-- ConfigError (500, server_error)                    a bad config; raised at start
    +-- TeacherError (502, teacher_error)                  one teacher failed; names it
    |   +-- TeacherUnreachableError                        connection refused, DNS, reset
    |   |   +-- CircuitOpenError                           the endpoint's breaker is open
    |   +-- TeacherTimeoutError (504)
    |   +-- TeacherHTTPError                               the teacher answered an error status
    |   +-- TeacherProtocolError                           malformed JSON or missing fields
    |   |   +-- SpanMismatchError                          scored tokens do not spell the target
    |   +-- TeacherCapabilityError (400)                   asked to do what it cannot
    |       +-- ScoredPromptTooLongError                   a scored prompt over its context
    +-- DecodeError (502, decode_error)                    no candidate survived a step
        +-- DecodeTimeoutError (504)                       over the server's request_timeout
        +-- TeachersTimedOutError (504)                    every failure of the step was a timeout
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError


class CordError(Exception):
    status: int = 500
    error_type: str = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def headers(self) -> dict[str, str]:
        """HTTP headers the error response carries (none but for a few errors)."""
        return {}

    def to_openai(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequestError(CordError):
    status = 400
    error_type = "invalid_request_error"


class ContextLengthExceededError(InvalidRequestError):
    code = "context_length_exceeded"


class UnsupportedFieldError(InvalidRequestError):
    code = "unsupported_parameter"


class RequestTooLargeError(InvalidRequestError):
    status = 413
    code = "request_too_large"


class RequestTimeoutError(InvalidRequestError):
    status = 408
    code = "body_timeout"


class AuthenticationError(CordError):
    status = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class ModelNotFoundError(CordError):
    status = 404
    error_type = "invalid_request_error"
    code = "model_not_found"


class NotFoundError(CordError):
    status = 404
    error_type = "invalid_request_error"
    code = "not_found"


class RateLimitError(CordError):
    status = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"
    retry_after_s = 1

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class ConfigError(CordError):
    """A configuration that cannot run. `problems` lists every bad field."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or []


class TeacherError(CordError):
    status = 502
    error_type = "teacher_error"

    def __init__(self, teacher: str, message: str, **kwargs: Any):
        super().__init__(f"teacher '{teacher}': {message}", **kwargs)
        self.teacher = teacher


class TeacherUnreachableError(TeacherError):
    code = "teacher_unreachable"


class CircuitOpenError(TeacherUnreachableError):
    """The endpoint failed too often in a row: calls fail at once until its cool-down ends."""

    code = "circuit_open"


class TeacherTimeoutError(TeacherError):
    status = 504
    code = "teacher_timeout"


class TeacherHTTPError(TeacherError):
    code = "teacher_http_error"

    def __init__(self, teacher: str, message: str, *, http_status: int, **kwargs: Any):
        super().__init__(teacher, message, **kwargs)
        self.http_status = http_status


class TeacherProtocolError(TeacherError):
    code = "teacher_protocol_error"


class SpanMismatchError(TeacherProtocolError):
    """The tokens picked as a scored span do not decode to the target text: never scored."""

    code = "span_mismatch"


class TeacherCapabilityError(TeacherError):
    status = 400
    error_type = "invalid_request_error"
    code = "teacher_capability"


class ScoredPromptTooLongError(TeacherCapabilityError):
    code = "context_length_exceeded"


class DecodeError(CordError):
    status = 502
    error_type = "decode_error"
    code = "no_candidate_survived"


class DecodeTimeoutError(DecodeError):
    status = 504
    code = "request_timeout"


class TeachersTimedOutError(DecodeError):
    status = 504
    code = "teacher_timeout"


@dataclass(frozen=True)
class FieldProblem:
    """One bad field of a pydantic validation error."""

    location: tuple[str | int, ...]
    kind: str
    message: str

    def __str__(self) -> str:
        path = ".".join(str(part) for part in self.location) or "(top level)"
        return f"{path}: {self.message}"


def field_problems(error: ValidationError) -> list[FieldProblem]:
    """Every bad field, in order; an emptied list whose items were each reported is left out."""
    items = error.errors()
    locations = [tuple(item["loc"]) for item in items]
    problems = []
    for item in items:
        location = tuple(item["loc"])
        if item["type"] == "too_short" and any(
            other[: len(location)] == location and other != location for other in locations
        ):
            continue
        message = item["msg"].removeprefix("Value error, ")
        problems.append(FieldProblem(location, item["type"], message))
    return problems


def format_validation_error(error: ValidationError) -> list[str]:
    """Every bad field as ``path: message``."""
    return [str(problem) for problem in field_problems(error)]
