"""A Responses request as the chat completion request the proxy already decodes.

``instructions`` becomes a system message; the stored conversation of
``previous_response_id`` (its input and its answer) comes before this request's input;
``max_output_tokens`` is ``max_completion_tokens``, ``reasoning.effort`` is
``reasoning_effort``, ``text.format`` is ``response_format``; the recorded fields and the
``cord`` extension go across as they are. A chat field's 400 is named by its Responses field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from cord_proxy.errors import InvalidRequestError
from cord_proxy.protocol import ChatCompletionRequest, validation_error
from cord_proxy.responses.request import ResponseRequest

PASSED_AS_IS = (
    "model",
    "temperature",
    "top_p",
    "metadata",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "prompt_cache_options",
    "service_tier",
    "parallel_tool_calls",
)
# the chat field a Responses field became, for the param of a 400
RESPONSES_PARAM = {
    "messages": "input",
    "max_completion_tokens": "max_output_tokens",
    "reasoning_effort": "reasoning.effort",
    "response_format": "text.format",
}
Message = dict[str, str]


def conversation(request: ResponseRequest, previous: Sequence[Message] = ()) -> list[Message]:
    """The turns of this request after the `previous` ones (instructions not included)."""
    return [*previous, *({"role": m.role, "content": m.text()} for m in request.input_messages())]


def chat_request(request: ResponseRequest, turns: Sequence[Message]) -> ChatCompletionRequest:
    """The chat completion request of `request`, whose conversation is `turns`."""
    messages = list(turns)
    if request.instructions:
        messages.insert(0, {"role": "system", "content": request.instructions})
    body: dict[str, Any] = {name: getattr(request, name) for name in PASSED_AS_IS}
    body.update(
        messages=messages,
        max_completion_tokens=request.max_output_tokens,
        reasoning_effort=request.reasoning.effort if request.reasoning else None,
        verbosity=request.text.verbosity if request.text else None,
        store=request.store,
        cord=request.cord,
    )
    if request.text and request.text.format:
        body["response_format"] = request.text.format.response_format()
    try:
        return ChatCompletionRequest.model_validate(
            {k: v for k, v in body.items() if v is not None}
        )
    except ValidationError as error:
        problem = validation_error(error)
        param = problem.param or ""
        head, _, rest = param.partition(".")
        named = RESPONSES_PARAM.get(head, head) + (f".{rest}" if rest else "")
        raise InvalidRequestError(problem.message.replace(param, named), param=named) from None


def provenance(request: ResponseRequest, chat: ChatCompletionRequest) -> dict[str, Any]:
    """What the Response's ``cord`` adds to the decode's provenance: the messages it decoded
    (the previous response's turns first) and the previous response's id."""
    return {
        "previous_response_id": request.previous_response_id,
        "messages": [{"role": m.role, "content": m.text()} for m in chat.messages],
    }
