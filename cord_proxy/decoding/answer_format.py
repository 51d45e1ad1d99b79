"""Structured answers: a final answer checked against the request's ``response_format``.

The format constrains the final answer, never the reasoning (docs/method.md, "The loop", step
5: the answer is written after ``</think>``). ``json_object``: the answer parses as a JSON
object. ``json_schema``: it parses and validates against ``json_schema.schema`` (JSON Schema,
by the ``jsonschema`` package, in the draft the schema names). Surrounding whitespace and one
Markdown code fence (```` ```json ... ``` ````) are taken off first: what is left is the answer
the client gets, so ``chat.completions.parse`` reads it as it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from jsonschema import exceptions, validators

from cord_proxy.errors import InvalidRequestError

FENCE = re.compile(r"\A```[A-Za-z0-9_-]*[ \t]*\n(?P<body>.*?)\n?```\Z", re.DOTALL)
SCHEMA_PARAM = "response_format.json_schema.schema"


class FormatMismatch(ValueError):
    """An answer that does not match the response_format; the message says where and why."""


def structured_answer(text: str, response_format: Mapping[str, Any]) -> str:
    """The answer the client gets: `text` unfenced and stripped, once it matches
    `response_format`; raises `FormatMismatch` when it does not (``text``: any text)."""
    kind = response_format.get("type")
    answer = unfenced(text)
    if kind not in ("json_object", "json_schema"):
        return answer
    value = _parsed(answer)
    if kind == "json_object" and not isinstance(value, dict):
        raise FormatMismatch(f"$: {_short(value)} is not a JSON object")
    if kind == "json_schema":
        _validate(value, schema_of(response_format))
    return answer


def unfenced(text: str) -> str:
    """`text` without surrounding whitespace and one Markdown code fence around all of it."""
    stripped = text.strip()
    fenced = FENCE.match(stripped)
    return fenced.group("body").strip() if fenced else stripped


def schema_of(response_format: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON Schema of a ``json_schema`` response_format, checked against its own draft
    (`InvalidRequestError` when it is no schema: the request's fault, not a teacher's)."""
    spec = response_format.get("json_schema")
    schema = spec.get("schema", {}) if isinstance(spec, Mapping) else None
    if not isinstance(schema, dict):
        raise InvalidRequestError("the json_schema's schema must be an object", param=SCHEMA_PARAM)
    try:
        validators.validator_for(schema).check_schema(schema)
    except exceptions.SchemaError as error:
        raise InvalidRequestError(
            f"the json_schema's schema is not a valid JSON Schema: {error.message}",
            param=SCHEMA_PARAM,
        ) from None
    return schema


def _parsed(answer: str) -> Any:
    try:
        return json.loads(answer)
    except json.JSONDecodeError as error:
        raise FormatMismatch(
            f"the answer is not JSON ({error.msg} at character {error.pos})"
        ) from None


def _validate(value: Any, schema: dict[str, Any]) -> None:
    """The most relevant schema error of `value`, as ``path: message``, if it has one."""
    validator = validators.validator_for(schema)(schema)
    error = exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        raise FormatMismatch(f"{error.json_path}: {error.message}")


def _short(value: Any, limit: int = 40) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
