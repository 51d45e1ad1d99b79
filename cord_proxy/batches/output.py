"""One batch line's result as a line of an OpenAI Batch output or error file.

The envelope is ``export``'s ``openai-batch`` line; its body is what the proxy would have
answered for the request: the chat completion of a ``/v1/chat/completions`` line, the Response
object (completed, or incomplete when the answer ran out of tokens) of a ``/v1/responses``
line.
"""

from __future__ import annotations

import secrets
from typing import Any

from cord_proxy.attempts import ProblemFailed
from cord_proxy.completion import completion_body, provenance
from cord_proxy.data.exports import batch_line
from cord_proxy.data.jsonl import encode_line
from cord_proxy.decoding.trace import DecodeResult
from cord_proxy.errors import error_body
from cord_proxy.protocol import ChatCompletionRequest
from cord_proxy.responses.conversion import provenance as responses_provenance
from cord_proxy.responses.objects import finished_response, response_object
from cord_proxy.responses.request import ResponseRequest
from cord_proxy.runtime import ChatJob


def success_line(record: dict[str, Any], job: ChatJob, result: DecodeResult) -> str:
    """`record` is the line's trace record (``data.records.trace_record``)."""
    body = completion_body(
        result,
        ensemble=job.ensemble,
        n=job.decode.options.n,
        reasoning_format=job.reasoning_format,
        request_id=record["request_id"],
    )
    return _text(batch_line(record, body))


def response_line(
    record: dict[str, Any],
    job: ChatJob,
    result: DecodeResult,
    request: ResponseRequest,
    chat: ChatCompletionRequest,
) -> str:
    """A ``/v1/responses`` line's output: the Response of its best trace, with the ``cord``
    provenance the Responses route gives it. Its id is the record's ``request_id``; it is not
    kept in the stored responses (``store`` says false): the output file holds it."""
    shell = response_object(record["request_id"], request, "completed")
    shell["store"] = False
    n = job.decode.options.n
    cord = {**provenance(result, job.ensemble, n), **responses_provenance(request, chat)}
    body = finished_response(shell, result.traces[0], result.prompt_tokens, cord)
    return _text(batch_line(record, body))


def error_line(custom_id: str, failure: ProblemFailed) -> str:
    """A failed request, as OpenAI writes it: its status and the error object as the body."""
    body = error_body(failure.message, _error_type(failure), code=failure.kind)
    request_id = f"req_{secrets.token_hex(12)}"
    return _text(
        {
            "id": f"batch_req_{secrets.token_hex(12)}",
            "custom_id": custom_id,
            "response": {
                "status_code": failure.status,
                "request_id": request_id,
                "body": body,
            },
            "error": None,
        }
    )


def expired_line(custom_id: str) -> str:
    """A request not run before the batch's window ran out, as OpenAI writes it: no
    response, and the error ``batch_expired``."""
    message = "This request was not run before the batch's completion window ran out."
    return _text(
        {
            "id": f"batch_req_{secrets.token_hex(12)}",
            "custom_id": custom_id,
            "response": None,
            "error": {"code": "batch_expired", "message": message},
        }
    )


def _error_type(failure: ProblemFailed) -> str:
    if failure.status in (400, 404):
        return "invalid_request_error"
    return "server_error" if failure.status >= 500 and not failure.transient else "teacher_error"


def _text(line: dict[str, Any]) -> str:
    return encode_line(line).decode().rstrip("\n")
