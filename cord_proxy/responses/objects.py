"""The Response object out, in the shape of the openai SDK's ``Response``: a ``reasoning``
item whose content holds the trace as ``reasoning_text``, then a ``message`` item with the
answer as ``output_text``; ``usage`` with ``output_tokens_details.reasoning_tokens``; the
decode's ``cord`` provenance as an extension field.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from cord_proxy.decoding.trace import FinishedTrace
from cord_proxy.responses.request import ResponseRequest

Status = Literal["queued", "in_progress", "completed", "failed", "cancelled", "incomplete"]
FINAL: tuple[Status, ...] = ("completed", "failed", "cancelled", "incomplete")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def response_object(
    response_id: str, request: ResponseRequest, status: Status, created_at: int | None = None
) -> dict[str, Any]:
    """The Response of `request` with no output yet, in `status`."""
    text_format = request.text.format if request.text and request.text.format else None
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at if created_at is not None else int(time.time()),
        "status": status,
        "background": bool(request.background),
        "model": request.model,
        "output": [],
        "error": None,
        "incomplete_details": None,
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "metadata": request.metadata or {},
        "parallel_tool_calls": bool(request.parallel_tool_calls),
        "previous_response_id": request.previous_response_id,
        "reasoning": {
            "effort": request.reasoning.effort if request.reasoning else None,
            "summary": None,
        },
        "service_tier": request.service_tier,
        "store": bool(request.store),
        "temperature": request.temperature,
        "text": {
            "format": text_format.model_dump(by_alias=True, exclude_none=True)
            if text_format
            else {"type": "text"},
            "verbosity": request.text.verbosity if request.text else None,
        },
        "tool_choice": "none",
        "tools": [],
        "top_p": request.top_p,
        "truncation": request.truncation or "disabled",
        "usage": None,
        "user": request.user,
        "safety_identifier": request.safety_identifier,
        "prompt_cache_key": request.prompt_cache_key,
    }


def reasoning_item(item_id: str, text: str | None, status: str) -> dict[str, Any]:
    """The trace as a ``reasoning`` item; `text` None: its content is not begun yet."""
    content = [] if text is None else [{"type": "reasoning_text", "text": text}]
    return {"id": item_id, "type": "reasoning", "summary": [], "content": content, "status": status}


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, text: str | None, status: str) -> dict[str, Any]:
    """The answer as an assistant ``message`` item; `text` None: no content part yet."""
    content = [] if text is None else [output_text(text)]
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def usage(prompt_tokens: int, reasoning_tokens: int, answer_tokens: int) -> dict[str, Any]:
    """A Response's usage; reasoning tokens are part of the output tokens."""
    output = reasoning_tokens + answer_tokens
    return {
        "input_tokens": prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": prompt_tokens + output,
    }


def failed_error(message: str) -> dict[str, Any]:
    """A failed Response's ``error``: the SDK knows a fixed set of codes; the decode's own code
    and status ride in the message."""
    return {"code": "server_error", "message": message}


def input_item(item_id: str, role: str, text: str) -> dict[str, Any]:
    """One input message as ``input_items`` lists it."""
    kind = "output_text" if role == "assistant" else "input_text"
    return {
        "id": item_id,
        "type": "message",
        "role": role,
        "status": "completed",
        "content": [{"type": kind, "text": text}],
    }


def finished_response(
    response: dict[str, Any], trace: FinishedTrace, prompt_tokens: int, cord: dict[str, Any]
) -> dict[str, Any]:
    """`response` (`response_object`'s) as one finished trace leaves it, all at once: what the
    sync route's events build step by step (its reasoning text is the steps', the first one's
    leading space cut). ``incomplete`` when the answer ran out of tokens."""
    texts = [step.text for step in trace.steps]
    if texts:
        texts[0] = texts[0].lstrip()
    incomplete = trace.answer_finish_reason == "length"
    return {
        **response,
        "status": "incomplete" if incomplete else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "output": [
            reasoning_item(new_id("rs"), "".join(texts), "completed"),
            message_item(new_id("msg"), trace.answer, "incomplete" if incomplete else "completed"),
        ],
        "usage": usage(prompt_tokens, trace.reasoning_tokens, trace.answer_tokens),
        "cord": cord,
        "completed_at": int(time.time()),
    }
