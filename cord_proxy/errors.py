"""The one exception tree of cord-proxy.

Every error the proxy can report maps to an OpenAI error object
(``{"error": {"message", "type", "param", "code"}}``) and an HTTP status. A class names its
status, type and code in its header; what it does not name it takes from its parent::

    CordError (500, server_error)
    +-- InvalidRequestError (400, invalid_request_error)
    |   +-- UnsupportedFieldError (400)
    |   +-- ContextLengthExceededError (400)
    |   +-- RequestTooLargeError (413)
    |   +-- RequestTimeoutError (408)
    +-- AuthenticationError (401, authentication_error)
    +-- ModelNotFoundError (404, invalid_request_error / model_not_found)
    +-- NotFoundError (404, invalid_request_error / not_found)
    +-- RateLimitError (429, rate_limit_error)
    +-- ConfigError (500, server_error)
    +-- TeacherError (502, teacher_error)
    |   +-- TeacherUnreachableError
    |   |   +-- CircuitOpenError
    |   +-- TeacherTimeoutError (504)
    |   +-- TeacherHTTPError
    |   +-- TeacherProtocolError
    |   |   +-- SpanMismatchError
    |   +-- TeacherCapabilityError (400)
    |       +-- ScoredPromptTooLongError
    +-- DecodeError (502, decode_error)
        +-- DecodeTimeoutError (504)
        +-- TeachersTimedOutError (504)
        +-- AnswerFormatError
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import ValidationError

CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
TEACHER_TIMEOUT = "teacher_timeout"
TEACHER_REFUSED = "teacher_refused_request"
REFUSAL_STATUSES = frozenset({400, 422})


def error_body(
    message: str, error_type: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """The one builder of an OpenAI error object: ``{"error": {message, type, param, code}}``.

    Every error body the proxy writes (a route's, the connection layer's, a stream's error
    event, a batch line's) is built here."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


class CordError(Exception):
    """An error the proxy reports; the catch-all is a 500."""

    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"
    code: str | None = None

    def __init_subclass__(
        cls,
        *,
        status: int | None = None,
        error_type: str | None = None,
        code: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        cls.status = status if status is not None else cls.status
        cls.error_type = error_type if error_type is not None else cls.error_type
        cls.code = code if code is not None else cls.code

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def headers(self) -> dict[str, str]:
        """HTTP headers the error response carries (none but for a few errors)."""
        return {}

    def to_openai(self, message: str | None = None) -> dict[str, Any]:
        """The error's OpenAI object; `message` replaces the message (a cleaned excerpt)."""
        text = self.message if message is None else message
        return error_body(text, self.error_type, param=self.param, code=self.code)


class InvalidRequestError(CordError, status=400, error_type="invalid_request_error"):
    """A bad field, or a bad `cord` option."""


class ContextLengthExceededError(InvalidRequestError, code=CONTEXT_LENGTH_EXCEEDED):
    """The messages fill every teacher's context."""


class UnsupportedFieldError(InvalidRequestError, code="unsupported_parameter"):
    """A field the proxy cannot honour."""


class RequestTooLargeError(InvalidRequestError, status=413, code="request_too_large"):
    """A body over the limit."""


class RequestTimeoutError(InvalidRequestError, status=408, code="body_timeout"):
    """A request's body did not arrive in time."""


class AuthenticationError(
    CordError, status=401, error_type="authentication_error", code="invalid_api_key"
):
    """A missing or wrong API key."""


class ModelNotFoundError(
    CordError, status=404, error_type="invalid_request_error", code="model_not_found"
):
    """No ensemble of that name."""


class NotFoundError(CordError, status=404, error_type="invalid_request_error", code="not_found"):
    """No such file or batch."""


class RateLimitError(
    CordError, status=429, error_type="rate_limit_error", code="rate_limit_exceeded"
):
    """Over the concurrency limit: try again after ``Retry-After`` seconds."""

    retry_after_s = 1

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class ConfigError(CordError):
    """A configuration that cannot run, raised at start. `problems` lists every bad field."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or []


class TeacherError(CordError, status=502, error_type="teacher_error"):
    """One teacher failed; the message names it."""

    def __init__(self, teacher: str, message: str, **kwargs: Any):
        super().__init__(f"teacher '{teacher}': {message}", **kwargs)
        self.teacher = teacher


class TeacherUnreachableError(TeacherError, code="teacher_unreachable"):
    """Connection refused, DNS, reset."""


class CircuitOpenError(TeacherUnreachableError, code="circuit_open"):
    """The endpoint failed too often in a row: calls fail at once until its cool-down ends."""


class TeacherTimeoutError(TeacherError, status=504, code=TEACHER_TIMEOUT):
    """The teacher did not answer in its timeout."""


class TeacherHTTPError(TeacherError, code="teacher_http_error"):
    """The teacher answered an error status; a refusal of the request itself (400, 422) has
    the code `TEACHER_REFUSED`."""

    def __init__(self, teacher: str, message: str, *, http_status: int, **kwargs: Any):
        if http_status in REFUSAL_STATUSES:
            kwargs.setdefault("code", TEACHER_REFUSED)
        super().__init__(teacher, message, **kwargs)
        self.http_status = http_status


class TeacherProtocolError(TeacherError, code="teacher_protocol_error"):
    """Malformed JSON, or missing fields."""


class SpanMismatchError(TeacherProtocolError, code="span_mismatch"):
    """The tokens picked as a scored span do not decode to the target text: never scored."""


class TeacherCapabilityError(
    TeacherError, status=400, error_type="invalid_request_error", code="teacher_capability"
):
    """Asked to do what it cannot."""


class ScoredPromptTooLongError(TeacherCapabilityError, code=CONTEXT_LENGTH_EXCEEDED):
    """A scored prompt over the teacher's context."""


class DecodeError(CordError, status=502, error_type="decode_error", code="no_candidate_survived"):
    """No candidate survived a step."""


class DecodeTimeoutError(DecodeError, status=504, code="request_timeout"):
    """Over the server's ``request_timeout``."""


class TeachersTimedOutError(DecodeError, status=504, code=TEACHER_TIMEOUT):
    """Every failure of the step was a timeout."""


class AnswerFormatError(DecodeError, code="response_format_mismatch"):
    """No finished trace got an answer that matches the request's response_format."""


@dataclass(frozen=True)
class FieldProblem:
    """One bad field of a pydantic validation error."""

    location: tuple[str | int, ...]
    kind: str
    message: str

    @property
    def path(self) -> str:
        return ".".join(str(part) for part in self.location) or "(top level)"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


OBJECT_TYPES = frozenset({"model_type", "model_attributes_type", "dict_type"})
OBJECT_EXPECTED = "Input should be an object"  # pydantic's names the model class
_BUILTIN_TAGS = frozenset({"str", "int", "float", "bool", "none", "bytes"})


def _without_union_tags(location: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """The field's path, cut at the first tag pydantic adds for a member of a union
    (``str``, ``list[TextPart]``, ``function-after[...]``, a model's class name): a client's
    field names are lower case, with no brackets."""
    for place, part in enumerate(location):
        if isinstance(part, str) and (part in _BUILTIN_TAGS or "[" in part or part[:1].isupper()):
            return location[:place]
    return location


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
        message = OBJECT_EXPECTED if item["type"] in OBJECT_TYPES else item["msg"]
        problems.append(
            FieldProblem(
                _without_union_tags(location), item["type"], message.removeprefix("Value error, ")
            )
        )
    return problems


def format_validation_error(error: ValidationError) -> list[str]:
    """Every bad field as ``path: message``."""
    return [str(problem) for problem in field_problems(error)]
