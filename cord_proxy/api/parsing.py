"""A chat completion request's JSON object checked and parsed, or a 400 that names the field.

Text that is not Unicode, a field the proxy refuses (request_fields.py) and a value the wire
model rejects each get their own message, with ``param`` set to the field's path.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from cord_proxy.errors import InvalidRequestError, UnsupportedFieldError, field_problems
from cord_proxy.protocol import ChatCompletionRequest, param_name, unencodable_text
from cord_proxy.request_fields import refused_field, without_refused


def parse_chat_request(body: dict[str, Any]) -> ChatCompletionRequest:
    bad_text = unencodable_text(body)
    if bad_text is not None:
        raise InvalidRequestError(
            f"Invalid value for '{bad_text}': a string holds a lone UTF-16 surrogate, "
            "which is not Unicode text",
            param=bad_text,
        )
    refused = refused_field(body)
    if refused is not None:
        raise UnsupportedFieldError(refused.refusal(), param=refused.name)
    try:
        return ChatCompletionRequest.model_validate(without_refused(body))
    except ValidationError as error:
        raise validation_error(error) from None


def validation_error(error: ValidationError) -> InvalidRequestError:
    """The 400 of a body the wire model rejects, naming its first bad field as OpenAI does."""
    first = field_problems(error)[0]
    param = param_name(first.location)
    if first.kind == "extra_forbidden":
        message = f"Unrecognized request argument supplied: {param}"
    else:
        message = f"Invalid value for '{param}': {first.message}"
    return InvalidRequestError(message, param=param)
