"""A chat completion request's JSON object checked and parsed, or a 400 that names the field
(protocol.py's `parse_body` over the chat fields of request_fields.py)."""

from __future__ import annotations

from typing import Any

from cord_proxy.protocol import ChatCompletionRequest, parse_body
from cord_proxy.request_fields import BY_NAME


def parse_chat_request(body: dict[str, Any]) -> ChatCompletionRequest:
    return parse_body(body, ChatCompletionRequest, BY_NAME)
